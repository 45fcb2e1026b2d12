//! Package relationships (Debian policy 7.1): `Depends: a (>= 1) | b:any, c [amd64]`.
//! Parsed into [`Relation`]s (one per comma-separated entry) of [`Atom`] alternatives, and
//! checked against versions with dpkg's ordering ([`crate::repo::version::compare`]).

use std::cmp::Ordering;
use std::fmt;

/// A version relation operator. The obsolete `<` and `>` mean `<=` and `>=`, as in dpkg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "<<" => Op::Lt,
            "<=" | "<" => Op::Le,
            "=" => Op::Eq,
            ">=" | ">" => Op::Ge,
            ">>" => Op::Gt,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<<",
            Op::Le => "<=",
            Op::Eq => "=",
            Op::Ge => ">=",
            Op::Gt => ">>",
        }
    }

    /// Whether `have OP want` holds.
    pub fn holds(self, have: &str, want: &str) -> bool {
        let o = crate::repo::version::compare(have, want);
        match self {
            Op::Lt => o == Ordering::Less,
            Op::Le => o != Ordering::Greater,
            Op::Eq => o == Ordering::Equal,
            Op::Ge => o != Ordering::Less,
            Op::Gt => o == Ordering::Greater,
        }
    }
}

/// One alternative of a relation: `name[:arch] [(op version)] [[archs]] [<profiles>]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Atom {
    pub name: String,
    /// `any`, `native` or an architecture name after `:`.
    pub arch: Option<String>,
    pub version: Option<(Op, String)>,
    /// `[amd64 !i386]`: the architectures the atom applies to (source packages only).
    pub arch_list: Vec<String>,
}

impl Atom {
    /// Whether a package of version `v` meets the version part.
    pub fn version_ok(&self, v: &str) -> bool {
        self.version
            .as_ref()
            .is_none_or(|(op, want)| op.holds(v, want))
    }

    /// Whether the atom applies on `arch` (its `[...]` list allows it).
    pub fn applies_on(&self, arch: &str) -> bool {
        if self.arch_list.is_empty() {
            return true;
        }
        let negated = self.arch_list.iter().all(|a| a.starts_with('!'));
        if negated {
            !self.arch_list.iter().any(|a| &a[1..] == arch)
        } else {
            self.arch_list.iter().any(|a| a == arch || a == "any")
        }
    }
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(a) = &self.arch {
            write!(f, ":{a}")?;
        }
        if let Some((op, v)) = &self.version {
            write!(f, " ({} {v})", op.as_str())?;
        }
        Ok(())
    }
}

/// One comma-separated entry: alternatives, the first preferred.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Relation(pub Vec<Atom>);

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

fn valid_name(n: &str) -> bool {
    n.len() >= 2
        && n.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
}

fn parse_atom(text: &str) -> Result<Atom, String> {
    let mut rest = text.trim();
    let end = rest
        .find(|c: char| c.is_whitespace() || "([<".contains(c))
        .unwrap_or(rest.len());
    let (head, tail) = rest.split_at(end);
    rest = tail.trim_start();
    let (name, arch) = match head.split_once(':') {
        Some((n, a)) => (n, Some(a.to_string())),
        None => (head, None),
    };
    if !valid_name(name) {
        return Err(format!("`{name}` is not a package name"));
    }
    if arch
        .as_deref()
        .is_some_and(|a| a.is_empty() || !a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    {
        return Err(format!("`{head}` has a bad architecture qualifier"));
    }
    let mut version = None;
    if let Some(r) = rest.strip_prefix('(') {
        let close = r
            .find(')')
            .ok_or_else(|| format!("`{text}`: `(` without `)`"))?;
        let inner = r[..close].trim();
        let split = inner
            .find(|c: char| !"<>=".contains(c))
            .unwrap_or(inner.len());
        let (op, v) = inner.split_at(split);
        let op = Op::parse(op.trim())
            .ok_or_else(|| format!("`{text}`: `{op}` is not <<, <=, =, >= or >>"))?;
        let v = v.trim();
        if v.is_empty() || v.contains(char::is_whitespace) {
            return Err(format!("`{text}`: bad version `{v}`"));
        }
        version = Some((op, v.to_string()));
        rest = r[close + 1..].trim_start();
    }
    let mut arch_list = Vec::new();
    if let Some(r) = rest.strip_prefix('[') {
        let close = r
            .find(']')
            .ok_or_else(|| format!("`{text}`: `[` without `]`"))?;
        arch_list = r[..close].split_whitespace().map(str::to_string).collect();
        rest = r[close + 1..].trim_start();
    }
    // Build profiles (`<!nocheck>`) only matter when building source packages: skipped.
    while let Some(r) = rest.strip_prefix('<') {
        let close = r
            .find('>')
            .ok_or_else(|| format!("`{text}`: `<` without `>`"))?;
        rest = r[close + 1..].trim_start();
    }
    if !rest.is_empty() {
        return Err(format!("`{text}`: unexpected `{rest}`"));
    }
    Ok(Atom {
        name: name.to_string(),
        arch,
        version,
        arch_list,
    })
}

/// Parses a relationship field (`Depends`, `Conflicts`, `Provides`, ...). Empty entries
/// (trailing commas) are skipped.
pub(crate) fn parse(field: &str) -> Result<Vec<Relation>, String> {
    let mut out = Vec::new();
    for entry in field.split(',') {
        if entry.trim().is_empty() {
            continue;
        }
        let alts = entry
            .split('|')
            .map(parse_atom)
            .collect::<Result<Vec<_>, _>>()?;
        out.push(Relation(alts));
    }
    Ok(out)
}

/// Parses a field whose entries take no alternatives (`Conflicts`, `Breaks`, `Provides`,
/// `Replaces`): every atom, flattened.
pub(crate) fn parse_flat(field: &str) -> Result<Vec<Atom>, String> {
    Ok(parse(field)?.into_iter().flat_map(|r| r.0).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_packages_files_hold() {
        let r = parse(
            "libc6 (>= 2.34), libssl3 (>= 3.0.0) | libssl1.1,\n debconf (>= 0.5) | debconf-2.0, \
             python3:any, perl:native (<< 5.37~) [amd64 i386] <!nocheck>,",
        )
        .unwrap();
        assert_eq!(r.len(), 5);
        assert_eq!(r[0].0[0].version, Some((Op::Ge, "2.34".into())));
        assert_eq!(r[1].0.len(), 2);
        assert_eq!(r[1].to_string(), "libssl3 (>= 3.0.0) | libssl1.1");
        assert_eq!(r[3].0[0].arch.as_deref(), Some("any"));
        assert_eq!(r[4].0[0].version, Some((Op::Lt, "5.37~".into())));
        assert!(r[4].0[0].applies_on("amd64") && !r[4].0[0].applies_on("arm64"));
        assert_eq!(parse_flat("aa (= 1), bb").unwrap().len(), 2);
        // the obsolete single-character operators
        assert_eq!(
            parse("aa (> 1)").unwrap()[0].0[0].version,
            Some((Op::Ge, "1".into()))
        );
    }

    #[test]
    fn refuses_what_is_not_a_relation() {
        for bad in [
            "${shlibs:Depends}",
            "AA",
            "a",
            "aa (~ 1)",
            "aa (>= 1",
            "aa (>= )",
            "aa bb",
            "aa:",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn operators_follow_dpkg() {
        let a = |s: &str| parse(s).unwrap().remove(0).0.remove(0);
        assert!(a("xx (>= 1.0)").version_ok("1.0"));
        assert!(a("xx (>= 1.0)").version_ok("1:0.1"));
        assert!(!a("xx (>= 1.0)").version_ok("1.0~rc1"));
        assert!(a("xx (<< 2)").version_ok("1.9"));
        assert!(!a("xx (<< 2)").version_ok("2"));
        assert!(a("xx (= 1-1)").version_ok("1-1"));
        assert!(a("xx (>> 1-1)").version_ok("1-1+deb12u1"));
        assert!(a("xx [!i386]").applies_on("amd64"));
        assert!(!a("xx [!amd64]").applies_on("amd64"));
    }
}
