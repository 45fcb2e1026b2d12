//! Resolver tests on real index excerpts (`tests/fixtures/bookworm-*.Packages`: paragraphs
//! of Debian 12's main and security indexes, verbatim but for the maintainers' addresses)
//! plus a few made-up paragraphs where the archive has no example small enough.

use super::*;
use crate::debian::relation;

const MAIN: &str = include_str!("../../../tests/fixtures/bookworm-main.Packages");
const SECURITY: &str = include_str!("../../../tests/fixtures/bookworm-security.Packages");

fn index() -> Index {
    let mut i = Index::new("amd64");
    i.add_packages_text(MAIN, "bookworm").unwrap();
    i.add_packages_text(SECURITY, "bookworm-security").unwrap();
    i
}

fn roots(list: &[&str]) -> Vec<(Relation, String)> {
    list.iter()
        .flat_map(|r| relation::parse(r).unwrap())
        .map(|r| (r, "test".to_string()))
        .collect()
}

fn names(r: &Resolution) -> Vec<String> {
    r.packages.iter().map(|p| p.id()).collect()
}

fn ver(r: &Resolution, name: &str) -> String {
    r.packages
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("{name} not in {:?}", names(r)))
        .version
        .clone()
}

#[test]
fn the_static_set_with_maintainer_script_tools_excluded() {
    let req = Request {
        roots: roots(&["base-files, ca-certificates, media-types, netbase, tzdata"]),
        exclude: ["awk", "debconf", "openssl"].map(String::from).into(),
        ..Default::default()
    };
    let r = resolve(&index(), &req).unwrap();
    let got: Vec<&str> = r.packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        got,
        [
            "base-files",
            "ca-certificates",
            "media-types",
            "netbase",
            "tzdata"
        ]
    );
    // the newest across suites: tzdata from security, not main's
    assert_eq!(ver(&r, "tzdata"), "2026f-0+deb12u1");
    assert_eq!(
        r.packages
            .iter()
            .find(|p| p.name == "tzdata")
            .unwrap()
            .suite,
        "bookworm-security"
    );
    let ex: Vec<&str> = r.excluded.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(ex, ["awk", "debconf", "debconf", "openssl"]);
}

#[test]
fn virtual_packages_alternatives_and_pre_depends() {
    let req = Request {
        roots: roots(&["base-files", "tzdata"]),
        ..Default::default()
    };
    let r = resolve(&index(), &req).unwrap();
    // Pre-Depends: awk is virtual; mawk (required) beats gawk (optional).
    // tzdata: `debconf (>= 0.5) | debconf-2.0` takes the first alternative.
    let got: Vec<&str> = r.packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        got,
        [
            "base-files",
            "debconf",
            "gcc-12-base",
            "libc6",
            "libgcc-s1",
            "mawk",
            "tzdata"
        ]
    );
    // libc6: main's 2.36-9+deb12u14 is newer than security's deb12u7
    assert_eq!(ver(&r, "libc6"), "2.36-9+deb12u14");
    assert_eq!(r.needed_by["mawk"], "base-files 12.4+deb12u15");
    assert_eq!(r.needed_by["libgcc-s1"], "libc6 2.36-9+deb12u14");

    // A virtual name alone: the required provider wins over the optional one.
    let r = resolve(
        &index(),
        &Request {
            roots: roots(&["debconf-2.0"]),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(names(&r), ["debconf 1.5.82"]);

    // An alternative that does not exist falls through to the next.
    let r = resolve(
        &index(),
        &Request {
            roots: roots(&["no-such-package | netbase"]),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(names(&r), ["netbase 6.4"]);
}

#[test]
fn versioned_relations_and_versioned_provides() {
    // libgcc-s1 Provides: libgcc1 (= 1:12.2.0-14+deb12u1)
    let r = resolve(
        &index(),
        &Request {
            roots: roots(&["libgcc1 (>= 1:12)"]),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(names(&r).contains(&"libgcc-s1 12.2.0-14+deb12u1".to_string()));
    let err = resolve(
        &index(),
        &Request {
            roots: roots(&["libgcc1 (>= 1:13)"]),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(err.contains("`test` needs `libgcc1 (>= 1:13)`"), "{err}");
    let err = resolve(
        &index(),
        &Request {
            roots: roots(&["libc6 (>= 2.37)"]),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        err.contains(
            "the archive has `libc6` 2.36-9+deb12u14, 2.36-9+deb12u7 but not `libc6 (>= 2.37)`"
        ),
        "{err}"
    );
    // An older version is taken when the relation asks for it (<<).
    let r = resolve(
        &index(),
        &Request {
            roots: roots(&["tzdata (<< 2026c)"]),
            exclude: ["debconf".to_string()].into(),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(names(&r), ["tzdata 2026b-0+deb12u1"]);
}

#[test]
fn multi_arch_qualifiers() {
    // libc6 is Multi-Arch: same, so `libc6:any` cannot be met.
    let err = resolve(
        &index(),
        &Request {
            roots: roots(&["libc6:any"]),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(err.contains("not `Multi-Arch: allowed`"), "{err}");
    // python3 is Multi-Arch: allowed; `:any` takes it, and its closure is followed (this
    // excerpt lacks some of it, which the error names).
    let err = resolve(
        &index(),
        &Request {
            roots: roots(&["python3:any"]),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        err.contains("is in the archive") && !err.contains("Multi-Arch"),
        "{err}"
    );
    let r = resolve(
        &index(),
        &Request {
            roots: roots(&["libc6:native (>= 2.36)"]),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ver(&r, "libc6"), "2.36-9+deb12u14");
    let err = resolve(
        &index(),
        &Request {
            roots: roots(&["libc6:arm64"]),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(err.contains("libc6:arm64"), "{err}");
}

#[test]
fn conflicts_inside_the_set_are_an_error_that_names_both() {
    let err = resolve(
        &index(),
        &Request {
            roots: roots(&["systemd-sysv", "sysvinit-core"]),
            exclude: [
                "systemd",
                "initscripts",
                "sysvinit-utils",
                "mount",
                "debconf",
            ]
            .map(String::from)
            .into(),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(err.contains("Conflicts/Breaks inside the set"), "{err}");
    assert!(
        err.contains("systemd-sysv") && err.contains("sysvinit-core"),
        "{err}"
    );

    // A conflict steers the choice among alternatives instead when one is left.
    let mut i = index();
    i.add_packages_text(
        "Package: app\nVersion: 1\nArchitecture: amd64\nDepends: mawk | gawk\n\
         Conflicts: mawk\nFilename: pool/a.deb\nSize: 1\nSHA256: \
         0000000000000000000000000000000000000000000000000000000000000000\n",
        "local",
    )
    .unwrap();
    let steered = resolve(
        &i,
        &Request {
            roots: roots(&["app"]),
            exclude: [
                "libgmp10",
                "libmpfr6",
                "libreadline8",
                "libsigsegv2",
                "libc6",
            ]
            .map(String::from)
            .into(),
            ..Default::default()
        },
    )
    .map(|r| names(&r));
    assert_eq!(
        steered,
        Ok(vec!["app 1".to_string(), "gawk 1:5.2.1-2".to_string()])
    );
}

#[test]
fn installed_packages_satisfy_and_are_never_replaced() {
    let i = index();
    let old = i.find("libc6", "2.36-9+deb12u7").unwrap();
    let installed: BTreeMap<String, Arc<Package>> = [("libc6".to_string(), old)].into();
    let r = resolve(
        &i,
        &Request {
            roots: roots(&["libssl3"]),
            installed: installed.clone(),
            ..Default::default()
        },
    )
    .unwrap();
    // libssl3 needs libc6 (>= 2.34): the base's deb12u7 does; nothing else is added.
    assert_eq!(names(&r), ["libssl3 3.0.22-1~deb12u2"]);
    let err = resolve(
        &i,
        &Request {
            roots: roots(&["libc6 (>= 2.36-9+deb12u10)"]),
            installed,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        err.contains("the base holds `libc6 2.36-9+deb12u7`"),
        "{err}"
    );
}

#[test]
fn locked_versions_are_kept_until_updated() {
    let prefer: BTreeMap<String, String> =
        [("tzdata".to_string(), "2026b-0+deb12u1".to_string())].into();
    let mut req = Request {
        roots: roots(&["tzdata"]),
        exclude: ["debconf".to_string()].into(),
        prefer,
        ..Default::default()
    };
    assert_eq!(
        names(&resolve(&index(), &req).unwrap()),
        ["tzdata 2026b-0+deb12u1"]
    );
    req.update.insert("tzdata".into());
    assert_eq!(
        names(&resolve(&index(), &req).unwrap()),
        ["tzdata 2026f-0+deb12u1"]
    );
    // A preference that no longer fits the relation is ignored.
    req.update.clear();
    req.roots = roots(&["tzdata (>= 2026c)"]);
    assert_eq!(
        names(&resolve(&index(), &req).unwrap()),
        ["tzdata 2026f-0+deb12u1"]
    );
}

/// Made-up paragraphs (`Package`, `Version`, extra fields) on top of nothing.
fn made_up(paragraphs: &[(&str, &str, &str)]) -> Index {
    let mut i = Index::new("amd64");
    let text: String = paragraphs
        .iter()
        .map(|(n, v, extra)| {
            format!(
                "Package: {n}\nVersion: {v}\nArchitecture: amd64\n{extra}Filename: pool/{n}_{v}.deb\n\
                 Size: 1\nSHA256: {}\n\n",
                "0".repeat(64)
            )
        })
        .collect();
    i.add_packages_text(&text, "made-up").unwrap();
    i
}

#[test]
fn update_moves_a_package_reached_through_provides() {
    let i = made_up(&[
        ("app", "1", "Depends: awk\n"),
        ("mawk", "1", "Provides: awk\n"),
        ("mawk", "2", "Provides: awk\n"),
    ]);
    let mut req = Request {
        roots: roots(&["app"]),
        prefer: [("mawk".to_string(), "1".to_string())].into(),
        ..Default::default()
    };
    assert!(names(&resolve(&i, &req).unwrap()).contains(&"mawk 1".to_string()));
    req.update.insert("mawk".into());
    assert!(names(&resolve(&i, &req).unwrap()).contains(&"mawk 2".to_string()));
}

#[test]
fn an_unmeetable_relation_fails_at_once_whatever_was_chosen_before() {
    // 20 packages with two versions each are 2^20 combinations to a naive search.
    let mut paras: Vec<(String, String, String)> = Vec::new();
    let mut deps = Vec::new();
    for k in 0..20 {
        for v in ["1", "2"] {
            paras.push((format!("lib{k}x"), v.to_string(), String::new()));
        }
        deps.push(format!("lib{k}x"));
    }
    deps.push("missing-pkg".into());
    paras.push((
        "app".into(),
        "1".into(),
        format!("Depends: {}\n", deps.join(", ")),
    ));
    let refs: Vec<(&str, &str, &str)> = paras
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    let err = resolve(
        &made_up(&refs),
        &Request {
            roots: roots(&["app"]),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        err.contains("no package `missing-pkg` is in the archive"),
        "{err}"
    );
}

#[test]
fn a_virtual_package_with_several_providers_is_noted() {
    let i = made_up(&[
        (
            "exim4-daemon-light",
            "4",
            "Provides: mail-transport-agent\nPriority: optional\n",
        ),
        (
            "postfix",
            "3",
            "Provides: mail-transport-agent\nPriority: optional\n",
        ),
    ]);
    let r = resolve(
        &i,
        &Request {
            roots: roots(&["mail-transport-agent"]),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(names(&r), ["exim4-daemon-light 4"]);
    assert!(
        r.notes[0].contains("provided by 2 packages (exim4-daemon-light, postfix)"),
        "{:?}",
        r.notes
    );
}

#[test]
fn a_not_automatic_suite_is_taken_only_when_asked_for() {
    let mut i = index();
    i.add_packages_text(
        &format!(
            "Package: tzdata\nVersion: 2099a-1~bpo12+1\nArchitecture: all\nFilename: pool/t.deb\n\
             Size: 1\nSHA256: {}\n",
            "0".repeat(64)
        ),
        "bookworm-backports",
    )
    .unwrap();
    i.demote_suite("bookworm-backports");
    let req = |root: &str| Request {
        roots: roots(&[root]),
        exclude: ["debconf".to_string()].into(),
        ..Default::default()
    };
    assert_eq!(
        ver(&resolve(&i, &req("tzdata")).unwrap(), "tzdata"),
        "2026f-0+deb12u1"
    );
    assert_eq!(
        ver(&resolve(&i, &req("tzdata (>= 2099a)")).unwrap(), "tzdata"),
        "2099a-1~bpo12+1"
    );
}
