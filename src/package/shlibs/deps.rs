//! The dependency arithmetic of dpkg-shlibdeps and dpkg-gencontrol: minimum versions per
//! dependency template (`update_dependency_version`), the substvar's text (`#MINVER#`
//! replaced, entries sorted as `Dpkg::Deps::deps_compare` sorts them), and the merge into a
//! recipe's own list (`Dpkg::Deps::AND::simplify_deps`: an entry another one implies goes,
//! the stronger one taking the place of the first).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::debian::relation::{self, Atom, Op, Relation};
use crate::repo::version::compare;

/// Minimum versions per dependency template (`libc6 #MINVER#`, `zlib1g (>= 1:1.2.3)`):
/// dpkg-shlibdeps' `%dependencies` for one field.
#[derive(Debug, Clone, Default)]
pub(crate) struct Templates {
    /// Template → minimum version; `""` for none.
    map: BTreeMap<String, String>,
}

impl Templates {
    /// `update_dependency_version($dep, $minver)`: each comma-separated part of `template`
    /// gets `minver` unless it already has a higher one.
    pub(super) fn update(&mut self, template: &str, minver: &str) {
        for sub in template.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match self.map.get_mut(sub) {
                Some(have) => {
                    if have.is_empty()
                        || (!minver.is_empty() && compare(minver, have) == Ordering::Greater)
                    {
                        *have = minver.to_string();
                    }
                }
                None => {
                    self.map.insert(sub.to_string(), minver.to_string());
                }
            }
        }
    }

    /// What a `shlibs` line gives (`add_shlibs_dep`): each part, unversioned, replacing
    /// what was there.
    pub(super) fn set_shlibs(&mut self, dependency: &str) {
        for sub in dependency
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            self.map.insert(sub.to_string(), String::new());
        }
    }

    /// The substvar's value: `#MINVER#` replaced by `(>= v)` (removed when there is no
    /// version, or it is `0`, which Perl takes as false), parsed and sorted as dpkg does.
    pub(super) fn relations(&self) -> Result<Vec<Relation>, String> {
        let mut out = Vec::new();
        for (templ, v) in &self.map {
            let text = if !v.is_empty() && v != "0" {
                templ.replace("#MINVER#", &format!("(>= {v})"))
            } else {
                templ.replace("#MINVER#", "")
            };
            let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
            let parsed = relation::parse(&text)
                .map_err(|e| format!("invalid dependency got generated: `{text}`: {e}"))?;
            out.extend(parsed);
        }
        out.sort_by(deps_compare);
        Ok(out)
    }
}

/// `Dpkg::Deps::deps_compare`: atom by atom, by name, then relation (none, `>=`, `>>`, `=`,
/// `<<`, `<=`), then version as a string.
fn deps_compare(a: &Relation, b: &Relation) -> Ordering {
    let rank = |x: &Atom| match x.version.as_ref().map(|v| v.0) {
        None => 0,
        Some(Op::Ge) => 1,
        Some(Op::Gt) => 2,
        Some(Op::Eq) => 3,
        Some(Op::Lt) => 4,
        Some(Op::Le) => 5,
    };
    let ver = |x: &Atom| x.version.as_ref().map(|v| v.1.clone()).unwrap_or_default();
    for (x, y) in a.0.iter().zip(&b.0) {
        let o = x
            .name
            .cmp(&y.name)
            .then(rank(x).cmp(&rank(y)))
            .then_with(|| ver(x).cmp(&ver(y)));
        if o != Ordering::Equal {
            return o;
        }
    }
    a.0.len().cmp(&b.0.len())
}

/// One end of the versions an atom allows: (version, inclusive).
type Bound<'a> = Option<(&'a str, bool)>;

fn bounds(a: &Atom) -> (Bound<'_>, Bound<'_>) {
    match &a.version {
        None => (None, None),
        Some((op, v)) => match op {
            Op::Ge => (Some((v, true)), None),
            Op::Gt => (Some((v, false)), None),
            Op::Eq => (Some((v, true)), Some((v, true))),
            Op::Le => (None, Some((v, true))),
            Op::Lt => (None, Some((v, false))),
        },
    }
}

/// Whether every version `p` allows is one `q` allows (dpkg's `deps_eval_implication`),
/// for the same package and architecture qualifier.
fn atom_implies(p: &Atom, q: &Atom) -> bool {
    if p.name != q.name || p.arch != q.arch {
        return false;
    }
    let (pl, pu) = bounds(p);
    let (ql, qu) = bounds(q);
    inside(pl, ql, Ordering::Greater) && inside(pu, qu, Ordering::Less)
}

/// Whether bound `p` is at or inside bound `q` of the same side; `inward` is the ordering of
/// a version further inside (`Greater` for lower bounds, `Less` for upper ones).
fn inside(p: Bound<'_>, q: Bound<'_>, inward: Ordering) -> bool {
    match (p, q) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some((pv, pi)), Some((qv, qi))) => match compare(pv, qv) {
            Ordering::Equal => qi || !pi,
            o => o == inward,
        },
    }
}

/// Whether `p` implies `q`: each alternative of `p` implies one of `q`.
fn implies(p: &Relation, q: &Relation) -> bool {
    p.0.iter().all(|a| q.0.iter().any(|b| atom_implies(a, b)))
}

/// `simplify_deps`: drops each entry that an earlier kept entry, or one of `known` (the
/// fields before this one), implies; an entry a later one implies is replaced by that
/// later one in its place (`a | b, c, a` becomes `a, c`).
pub(crate) fn simplify(list: Vec<Relation>, known: &[Relation]) -> Vec<Relation> {
    let mut rest: std::collections::VecDeque<Relation> = list.into();
    let mut out: Vec<Relation> = Vec::new();
    'next: while let Some(dep) = rest.pop_front() {
        if known.iter().chain(&out).any(|o| implies(o, &dep)) {
            continue;
        }
        if let Some(i) = rest.iter().position(|o| implies(o, &dep)) {
            if let Some(stronger) = rest.remove(i) {
                rest.push_front(stronger);
            }
            continue 'next;
        }
        out.push(dep);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(rels: &[Relation]) -> String {
        rels.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn rels(s: &str) -> Vec<Relation> {
        relation::parse(s).unwrap()
    }

    #[test]
    fn minimum_versions_and_order_follow_dpkg_shlibdeps() {
        let mut t = Templates::default();
        t.update("zlib1g #MINVER#", "1:1.1.4");
        t.update("libc6 #MINVER#", "2.2.5");
        t.update("libc6 #MINVER#", "2.34");
        t.update("libc6 #MINVER#", "2.14");
        t.update("libc6 (>> 2.36), libc6 (<< 2.37)", "0");
        t.update("libfoo1", "");
        t.update("libfoo1", "");
        assert_eq!(
            text(&t.relations().unwrap()),
            "libc6 (>= 2.34), libc6 (>> 2.36), libc6 (<< 2.37), libfoo1, zlib1g (>= 1:1.1.4)"
        );
        // a shlibs line wins over what was there, unversioned
        t.set_shlibs("zlib1g (>= 1:1.2.3.3.dfsg-1)");
        assert!(text(&t.relations().unwrap()).ends_with("zlib1g (>= 1:1.2.3.3.dfsg-1)"));
        let mut zero = Templates::default();
        zero.update("libz9 #MINVER#", "0");
        assert_eq!(text(&zero.relations().unwrap()), "libz9");
        let mut bad = Templates::default();
        bad.update("Not A Package #MINVER#", "1");
        assert!(bad.relations().is_err());
    }

    #[test]
    fn merging_keeps_the_stricter_in_the_first_place() {
        let s = |list: &str, known: &str| {
            let known = if known.is_empty() {
                Vec::new()
            } else {
                rels(known)
            };
            text(&simplify(rels(list), &known))
        };
        assert_eq!(
            s("libc6 (>= 2.14), adduser, libc6 (>= 2.34)", ""),
            "libc6 (>= 2.34), adduser"
        );
        assert_eq!(
            s("libc6 (>= 2.36), adduser, libc6 (>= 2.34)", ""),
            "libc6 (>= 2.36), adduser"
        );
        assert_eq!(s("libc6, libc6 (>= 2.34)", ""), "libc6 (>= 2.34)");
        assert_eq!(s("aa | bb, cc, aa", ""), "aa, cc");
        assert_eq!(
            s("libc6 (>> 2.36), libc6 (<< 2.37), libc6 (>= 2.34)", ""),
            "libc6 (>> 2.36), libc6 (<< 2.37)"
        );
        assert_eq!(s("libc6 (>= 2.34), x11", "libc6 (>= 2.36)"), "x11");
        assert_eq!(s("aa (= 1), aa (>= 1)", ""), "aa (= 1)");
        assert_eq!(s("aa (>> 1), aa (>= 1)", ""), "aa (>> 1)");
        assert_eq!(s("aa (>= 1), aa (>> 1)", ""), "aa (>> 1)");
        assert_eq!(s("aa:any, aa", ""), "aa:any, aa");
    }
}
