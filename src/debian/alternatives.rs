//! What `update-alternatives --install` in maintainer scripts would make, made natively:
//! package sets never run their postinst, so `/usr/bin/awk` (mawk), `/usr/bin/which`
//! (debianutils) and the like would be missing. Each literal `update-alternatives
//! --install LINK NAME PATH PRIORITY [--slave LINK NAME PATH]...` of a postinst is taken;
//! for every NAME the highest priority whose PATH is in the set wins (ties: the first
//! package by name), as in auto mode: `LINK -> /etc/alternatives/NAME -> PATH`, and each
//! slave whose path exists. Invocations built from shell variables or loops cannot be read
//! without running the script; they are returned so they can be reported.

/// One `--install` of a postinst.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Install {
    pub package: String,
    pub link: String,
    pub name: String,
    pub path: String,
    pub priority: i64,
    /// `(link, name, path)` of each `--slave`.
    pub slaves: Vec<(String, String, String)>,
}

/// The `--install` calls of a postinst script: `(read, unreadable)`; an unreadable one is
/// the command line as written.
pub(crate) fn parse(package: &str, script: &str) -> (Vec<Install>, Vec<String>) {
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in script.lines() {
        let line = line.split(" #").next().unwrap_or(line).trim_end();
        if let Some(body) = line.strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
        } else {
            current.push_str(line);
            logical.push(std::mem::take(&mut current));
        }
    }
    let mut found = Vec::new();
    let mut unread = Vec::new();
    for l in logical {
        let words: Vec<&str> = l.split_whitespace().collect();
        let Some(at) = words.iter().position(|w| *w == "--install") else {
            continue;
        };
        if !words[..at]
            .iter()
            .any(|w| w.ends_with("update-alternatives"))
        {
            continue;
        }
        let args = &words[at + 1..];
        let literal = |w: &str| !w.contains(['$', '`', '"', '\'', '*', ';', '|', '&']);
        let parsed = (|| {
            let [link, name, path, priority, rest @ ..] = args else {
                return None;
            };
            if ![link, name, path, priority].iter().all(|w| literal(w)) {
                return None;
            }
            let mut slaves = Vec::new();
            let mut rest = rest;
            while let ["--slave", sl, sn, sp, tail @ ..] = rest {
                if ![sl, sn, sp].iter().all(|w| literal(w)) {
                    return None;
                }
                slaves.push((sl.to_string(), sn.to_string(), sp.to_string()));
                rest = tail;
            }
            // What follows must end the command (`|| true`, `;`, `fi`...), not more options.
            if rest.first().is_some_and(|w| w.starts_with("--")) {
                return None;
            }
            Some(Install {
                package: package.to_string(),
                link: link.to_string(),
                name: name.to_string(),
                path: path.to_string(),
                priority: priority.parse().ok()?,
                slaves,
            })
        })();
        match parsed {
            Some(i) if i.link.starts_with('/') && i.path.starts_with('/') => found.push(i),
            _ => unread.push(l.trim().to_string()),
        }
    }
    (found, unread)
}

/// The winners: for each name, the install of highest priority whose path `exists`.
pub(crate) fn select<'a>(all: &'a [Install], exists: &dyn Fn(&str) -> bool) -> Vec<&'a Install> {
    let mut best: std::collections::BTreeMap<&str, &Install> = Default::default();
    for i in all.iter().filter(|i| exists(&i.path)) {
        match best.get(i.name.as_str()) {
            Some(b) if b.priority >= i.priority => {}
            _ => {
                best.insert(&i.name, i);
            }
        }
    }
    best.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAWK: &str = "#!/bin/sh\nset -e\nif [ \"$1\" = configure ]; then\n        \
        update-alternatives --install /usr/bin/awk awk /usr/bin/mawk 5 \\\n            \
        --slave /usr/share/man/man1/awk.1.gz awk.1.gz /usr/share/man/man1/mawk.1.gz \\\n            \
        --slave /usr/bin/nawk nawk /usr/bin/mawk\nfi\n";

    #[test]
    fn literal_installs_are_read_and_loops_are_not() {
        let (found, unread) = parse("mawk", MAWK);
        assert_eq!(unread, Vec::<String>::new());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].link, "/usr/bin/awk");
        assert_eq!(found[0].priority, 5);
        assert_eq!(found[0].slaves[1].0, "/usr/bin/nawk");
        let (found, unread) = parse(
            "jre",
            "for i in $jre_tools; do\n  update-alternatives --install /usr/bin/$i $i $basedir/bin/$i 1711\ndone\n",
        );
        assert!(found.is_empty());
        assert_eq!(unread.len(), 1);
        let gawk = Install {
            package: "gawk".into(),
            priority: 10,
            path: "/usr/bin/gawk".into(),
            ..found_one()
        };
        let all = [found_one(), gawk];
        let win = select(&all, &|p| p == "/usr/bin/mawk" || p == "/usr/bin/gawk");
        assert_eq!(win[0].package, "gawk");
        let win = select(&all, &|p| p == "/usr/bin/mawk");
        assert_eq!(win[0].package, "mawk");
    }

    fn found_one() -> Install {
        parse("mawk", MAWK).0.remove(0)
    }
}
