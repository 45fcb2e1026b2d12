//! The resolver: the closure of a set of relations over an [`Index`], as apt would install
//! it. Depends and Pre-Depends are followed; of the alternatives `a | b` the first that can
//! be satisfied wins; versioned relations, virtual packages (`Provides`, versioned or not)
//! and architecture qualifiers (`:any` needs `Multi-Arch: allowed`, `:native`) are honoured;
//! each name gets one version, the newest across the suites unless a preferred (locked)
//! version still fits. Conflicts and Breaks inside the set make a candidate unusable; when
//! nothing is left, the error says which relation failed and why. Packages the base already
//! holds (`installed`) satisfy relations and are never replaced. Nothing comes in unless a
//! relation asks for it (Essential packages included).
//!
//! The search backtracks over candidates and is bounded ([`MAX_STEPS`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use super::index::{Index, MultiArch, Package};
use super::relation::{Atom, Relation};

/// Candidate choices tried before giving up.
pub(crate) const MAX_STEPS: usize = 100_000;

/// What to resolve.
#[derive(Debug, Clone, Default)]
pub(crate) struct Request {
    /// Root relations with who asked for them (`recipes/app.toml`, `base static`).
    pub roots: Vec<(Relation, String)>,
    /// Packages already present (the base's), by name.
    pub installed: BTreeMap<String, Arc<Package>>,
    /// Relations naming one of these count as met without installing anything.
    pub exclude: BTreeSet<String>,
    /// Versions to keep when they still fit (from the lock), by name.
    pub prefer: BTreeMap<String, String>,
    /// Names whose preference is dropped (`lock --update NAME`).
    pub update: BTreeSet<String>,
}

/// The result: the packages to add (not the installed ones), sorted by name.
#[derive(Debug, Clone, Default)]
pub(crate) struct Resolution {
    pub packages: Vec<Arc<Package>>,
    /// Why each package is in: the package (or root) whose relation brought it.
    pub needed_by: BTreeMap<String, String>,
    /// Excluded names that a relation asked for, with who asked.
    pub excluded: Vec<(String, String)>,
    /// Choices worth a line: a virtual package several packages provide.
    pub notes: Vec<String>,
}

#[derive(Clone)]
struct State {
    chosen: BTreeMap<String, Arc<Package>>,
    needed_by: BTreeMap<String, String>,
    queue: VecDeque<(Relation, String)>,
    excluded: Vec<(String, String)>,
    notes: Vec<String>,
}

struct Search<'a> {
    index: &'a Index,
    req: &'a Request,
    steps: usize,
    /// The most specific failure seen: (depth, message).
    failure: Option<(usize, String)>,
    /// A failure no other choice can fix (nothing in the archive meets a relation): the
    /// search stops at once instead of trying every combination of earlier choices.
    fatal: Option<String>,
}

/// Resolves `req` over `index`.
pub(crate) fn resolve(index: &Index, req: &Request) -> Result<Resolution, String> {
    let state = State {
        chosen: req.installed.clone(),
        needed_by: BTreeMap::new(),
        queue: req.roots.iter().cloned().collect(),
        excluded: Vec::new(),
        notes: Vec::new(),
    };
    // Installed packages must be consistent among themselves; their own relations are
    // not followed (the base is what it is).
    let mut search = Search {
        index,
        req,
        steps: 0,
        failure: None,
        fatal: None,
    };
    match search.solve(state, 0) {
        Some(done) => {
            let packages: Vec<Arc<Package>> = done
                .chosen
                .iter()
                .filter(|(name, _)| !req.installed.contains_key(*name))
                .map(|(_, p)| p.clone())
                .collect();
            let mut excluded = done.excluded;
            excluded.sort();
            excluded.dedup();
            let mut notes = done.notes;
            notes.sort();
            notes.dedup();
            Ok(Resolution {
                packages,
                needed_by: done.needed_by,
                excluded,
                notes,
            })
        }
        None => Err(search
            .fatal
            .or(search.failure.map(|(_, m)| m))
            .unwrap_or_else(|| "no solution".to_string())),
    }
}

/// Whether package `p` satisfies atom `a` directly (by name, version, architecture).
fn real_match(a: &Atom, p: &Package, native: &str) -> bool {
    p.name == a.name && a.version_ok(&p.version) && arch_ok(a, p, native)
}

fn arch_ok(a: &Atom, p: &Package, native: &str) -> bool {
    match a.arch.as_deref() {
        None => p.architecture == native || p.architecture == "all",
        Some("any") => p.multi_arch == MultiArch::Allowed,
        Some("native") => p.architecture == native || p.architecture == "all",
        Some(other) => p.architecture == other,
    }
}

/// Whether `p` provides what `a` asks for (a versioned relation needs a versioned Provides).
fn provide_match(a: &Atom, p: &Package) -> bool {
    if matches!(a.arch.as_deref(), Some(x) if x != "native" && x != "any") {
        return false;
    }
    p.provides.iter().any(|prov| {
        prov.name == a.name
            && match (&a.version, &prov.version) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(_), Some((_, v))) => a.version_ok(v),
            }
    })
}

/// Whether relation atom `c` (a Conflicts/Breaks entry of some package) hits package `p`.
fn conflict_hits(c: &Atom, p: &Package) -> bool {
    if c.name == p.name {
        return c.version_ok(&p.version);
    }
    // An unversioned conflict on a virtual name hits every provider; a versioned one only
    // providers with a matching versioned Provides.
    p.provides.iter().any(|prov| {
        prov.name == c.name
            && match (&c.version, &prov.version) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(_), Some((_, v))) => c.version_ok(v),
            }
    })
}

/// Why `a` and `b` cannot be installed together, if they cannot.
fn clash(a: &Package, b: &Package) -> Option<String> {
    if a.name == b.name {
        return None;
    }
    for (x, y) in [(a, b), (b, a)] {
        for (field, list) in [("Conflicts", &x.conflicts), ("Breaks", &x.breaks)] {
            if let Some(c) = list.iter().find(|c| conflict_hits(c, y)) {
                return Some(format!("`{}` {field}: {c}, which `{}` is", x.id(), y.id()));
            }
        }
    }
    None
}

fn priority_rank(p: &str) -> u8 {
    match p {
        "required" => 0,
        "important" => 1,
        "standard" => 2,
        "optional" => 3,
        _ => 4,
    }
}

impl Search<'_> {
    fn fail(&mut self, depth: usize, msg: String) {
        if self.failure.as_ref().is_none_or(|(d, _)| depth >= *d) {
            self.failure = Some((depth, msg));
        }
    }

    fn satisfied(&self, rel: &Relation, chosen: &BTreeMap<String, Arc<Package>>) -> bool {
        let native = &self.index.arch;
        rel.0.iter().any(|a| {
            chosen
                .get(&a.name)
                .is_some_and(|p| real_match(a, p, native))
                || chosen.values().any(|p| provide_match(a, p))
        })
    }

    /// Candidates for a relation in preference order, each with the atom it satisfies.
    fn candidates(&self, rel: &Relation) -> Vec<Arc<Package>> {
        let native = &self.index.arch;
        let mut out: Vec<Arc<Package>> = Vec::new();
        for a in rel.0.iter().filter(|a| a.applies_on(native)) {
            let mut real: Vec<Arc<Package>> = self
                .index
                .versions(&a.name)
                .into_iter()
                .filter(|p| real_match(a, p, native))
                .collect();
            if let Some(v) = self
                .req
                .prefer
                .get(&a.name)
                .filter(|_| !self.req.update.contains(&a.name))
            {
                if let Some(i) = real.iter().position(|p| &p.version == v) {
                    let p = real.remove(i);
                    real.insert(0, p);
                }
            }
            let mut provided: Vec<Arc<Package>> = self
                .index
                .providers(&a.name)
                .into_iter()
                .map(|(p, _)| p)
                .filter(|p| {
                    provide_match(a, p)
                        && arch_ok(
                            &Atom {
                                arch: None,
                                ..a.clone()
                            },
                            p,
                            native,
                        )
                })
                .collect();
            let preferred = |p: &Package| {
                !self.req.update.contains(&p.name)
                    && self.req.prefer.get(&p.name) == Some(&p.version)
            };
            provided.sort_by(|x, y| {
                let px = preferred(x);
                let py = preferred(y);
                py.cmp(&px)
                    .then(priority_rank(&x.priority).cmp(&priority_rank(&y.priority)))
                    .then(x.name.cmp(&y.name))
                    .then(crate::repo::version::compare(&y.version, &x.version))
            });
            for p in real.into_iter().chain(provided) {
                if !out.iter().any(|o| Arc::ptr_eq(o, &p)) {
                    out.push(p);
                }
            }
        }
        out
    }

    /// Why no package fits `rel` (when it has no candidate at all).
    fn explain(
        &self,
        rel: &Relation,
        who: &str,
        chosen: &BTreeMap<String, Arc<Package>>,
    ) -> String {
        let native = &self.index.arch;
        let mut why = Vec::new();
        for a in &rel.0 {
            let versions = self.index.versions(&a.name);
            let providers = self.index.providers(&a.name);
            if let Some(p) = chosen.get(&a.name) {
                if a.arch.as_deref() == Some("any") && p.multi_arch != MultiArch::Allowed {
                    why.push(format!(
                        "`{}` is not `Multi-Arch: allowed`, so `{a}` cannot be met",
                        a.name
                    ));
                    continue;
                }
                if !real_match(a, p, native) {
                    let whose = if self.req.installed.contains_key(&a.name) {
                        "the base holds"
                    } else {
                        "the set already has"
                    };
                    why.push(format!("{whose} `{}`, which is not `{a}`", p.id()));
                    continue;
                }
            }
            if versions.is_empty() && providers.is_empty() {
                why.push(format!("no package `{}` is in the archive", a.name));
            } else if !versions.is_empty() && a.version.is_some() {
                why.push(format!(
                    "the archive has `{}` {} but not `{a}`",
                    a.name,
                    versions
                        .iter()
                        .map(|p| p.version.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            } else if a.arch.as_deref() == Some("any") {
                why.push(format!(
                    "`{}` is not `Multi-Arch: allowed`, so `{a}` cannot be met",
                    a.name
                ));
            } else {
                why.push(format!("nothing in the archive satisfies `{a}`"));
            }
        }
        format!("`{who}` needs `{rel}`, but {}", why.join("; "))
    }

    fn solve(&mut self, mut state: State, depth: usize) -> Option<State> {
        loop {
            let Some((rel, who)) = state.queue.pop_front() else {
                return Some(state);
            };
            if self.satisfied(&rel, &state.chosen) {
                continue;
            }
            if let Some(a) = rel.0.iter().find(|a| self.req.exclude.contains(&a.name)) {
                state.excluded.push((a.name.clone(), who.clone()));
                continue;
            }
            let candidates = self.candidates(&rel);
            let mut usable = Vec::new();
            for c in candidates {
                if let Some(have) = state.chosen.get(&c.name) {
                    if have.version != c.version {
                        continue;
                    }
                }
                if let Some(why) = state.chosen.values().find_map(|p| clash(&c, p)) {
                    self.fail(
                        depth,
                        format!(
                            "`{who}` needs `{rel}`; `{}` would fit, but {why} (Conflicts/Breaks inside the set)",
                            c.id()
                        ),
                    );
                    continue;
                }
                usable.push(c);
            }
            if usable.is_empty() {
                let msg = self.explain(&rel, &who, &state.chosen);
                if self.index_cannot_meet(&rel) {
                    // No earlier choice changes that: stop the whole search here.
                    self.fatal = Some(msg);
                } else if self.failure.as_ref().is_none_or(|(d, _)| depth > *d) {
                    self.fail(depth, msg);
                }
                return None;
            }
            if usable.len() > 1
                && rel.0.len() == 1
                && self.index.versions(&rel.0[0].name).is_empty()
            {
                let names: BTreeSet<&str> = usable.iter().map(|p| p.name.as_str()).collect();
                if names.len() > 1 {
                    state.notes.push(format!(
                        "`{}` is provided by {} packages ({}); took `{}`: name one in the \
                         relation to choose",
                        rel.0[0].name,
                        names.len(),
                        names.iter().take(6).copied().collect::<Vec<_>>().join(", "),
                        usable[0].name
                    ));
                }
            }
            if usable.len() == 1 {
                let c = usable.remove(0);
                self.add(&mut state, c, &who);
                self.steps += 1;
                if self.steps > MAX_STEPS {
                    self.give_up();
                    return None;
                }
                continue;
            }
            for c in usable {
                self.steps += 1;
                if self.steps > MAX_STEPS {
                    self.give_up();
                    return None;
                }
                let mut next = state.clone();
                self.add(&mut next, c, &who);
                if let Some(done) = self.solve(next, depth + 1) {
                    return Some(done);
                }
                if self.fatal.is_some() {
                    return None;
                }
            }
            return None;
        }
    }

    /// Whether no package of the archive (whatever else is chosen) meets `rel`.
    fn index_cannot_meet(&self, rel: &Relation) -> bool {
        let native = &self.index.arch;
        rel.0.iter().filter(|a| a.applies_on(native)).all(|a| {
            self.req
                .installed
                .get(&a.name)
                .is_none_or(|p| !real_match(a, p, native))
                && !self.req.installed.values().any(|p| provide_match(a, p))
                && self
                    .index
                    .versions(&a.name)
                    .iter()
                    .all(|p| !real_match(a, p, native))
                && self
                    .index
                    .providers(&a.name)
                    .iter()
                    .all(|(p, _)| !provide_match(a, p))
        })
    }

    /// The step limit is reached: say so, with the most specific failure seen.
    fn give_up(&mut self) {
        let last = self
            .failure
            .as_ref()
            .map(|(_, m)| format!("; the last failure: {m}"))
            .unwrap_or_default();
        self.fatal = Some(format!("{}{last}", too_many()));
    }

    fn add(&self, state: &mut State, p: Arc<Package>, who: &str) {
        state
            .needed_by
            .entry(p.name.clone())
            .or_insert_with(|| who.to_string());
        let id = p.id();
        for rel in p.all_depends() {
            state.queue.push_back((rel.clone(), id.clone()));
        }
        state.chosen.insert(p.name.clone(), p);
    }
}

fn too_many() -> String {
    format!(
        "the dependencies could not be resolved within {MAX_STEPS} steps; name the packages \
         you want among the alternatives explicitly"
    )
}

#[cfg(test)]
mod tests;
