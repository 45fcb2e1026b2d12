//! Owners and groups by name, as dpkg stores them in a .deb: the header carries the names,
//! which dpkg resolves on the machine where the package unpacks, and numeric ids it falls
//! back to when a name is unknown there (dpkg's `tarobject`, `src/main/archives.c`). The ids
//! written are those Debian fixes for every system (base-passwd's `passwd.master` and
//! `group.master`, bookworm), or 0 for any other name: a package that ships files owned by
//! its own service user must create that user before they unpack (in `preinst`), or dpkg
//! gives them to root.

/// Users with the same id on every Debian system (base-passwd 3.6.1).
const USERS: &[(&str, u32)] = &[
    ("root", 0),
    ("daemon", 1),
    ("bin", 2),
    ("sys", 3),
    ("sync", 4),
    ("games", 5),
    ("man", 6),
    ("lp", 7),
    ("mail", 8),
    ("news", 9),
    ("uucp", 10),
    ("proxy", 13),
    ("www-data", 33),
    ("backup", 34),
    ("list", 38),
    ("irc", 39),
    ("_apt", 42),
    ("nobody", 65534),
];

/// Groups with the same id on every Debian system (base-passwd 3.6.1).
const GROUPS: &[(&str, u32)] = &[
    ("root", 0),
    ("daemon", 1),
    ("bin", 2),
    ("sys", 3),
    ("adm", 4),
    ("tty", 5),
    ("disk", 6),
    ("lp", 7),
    ("mail", 8),
    ("news", 9),
    ("uucp", 10),
    ("man", 12),
    ("proxy", 13),
    ("kmem", 15),
    ("dialout", 20),
    ("fax", 21),
    ("voice", 22),
    ("cdrom", 24),
    ("floppy", 25),
    ("tape", 26),
    ("sudo", 27),
    ("audio", 29),
    ("dip", 30),
    ("www-data", 33),
    ("backup", 34),
    ("operator", 37),
    ("list", 38),
    ("irc", 39),
    ("src", 40),
    ("shadow", 42),
    ("utmp", 43),
    ("video", 44),
    ("sasl", 45),
    ("plugdev", 46),
    ("staff", 50),
    ("games", 60),
    ("users", 100),
    ("nogroup", 65534),
];

/// Longest name a tar header holds (a 32-byte field with its NUL), which is also the
/// limit of `useradd`.
pub(crate) const MAX_NAME: usize = 31;

/// Why `name` cannot be a user or group name in a package, if it cannot: adduser's rule for
/// system accounts (a lowercase letter or `_` first, then lowercase letters, digits, `_`
/// and `-`), at most [`MAX_NAME`] bytes.
pub(crate) fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("the name is empty".into());
    }
    if name.len() > MAX_NAME {
        return Some(format!(
            "`{}` is {} bytes long; names hold at most {MAX_NAME}",
            crate::diag::escape_controls(name),
            name.len()
        ));
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Some(format!(
            "`{name}` is a number: dpkg stores owners by name (the number would mean another user on another machine)"
        ));
    }
    let first = name.as_bytes()[0];
    let ok = (first.is_ascii_lowercase() || first == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !ok {
        return Some(format!(
            "`{}` is not a valid name: use lowercase letters, digits, `_` and `-`, starting with a letter or `_`",
            crate::diag::escape_controls(name)
        ));
    }
    None
}

/// The fixed id of a Debian system user, if `name` is one.
pub(crate) fn user_id(name: &str) -> Option<u32> {
    USERS.iter().find(|(n, _)| *n == name).map(|(_, id)| *id)
}

/// The fixed id of a Debian system group, if `name` is one.
pub(crate) fn group_id(name: &str) -> Option<u32> {
    GROUPS.iter().find(|(n, _)| *n == name).map(|(_, id)| *id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_match_this_machines_base_passwd_where_it_is_installed() {
        for (file, table) in [
            ("/usr/share/base-passwd/passwd.master", USERS),
            ("/usr/share/base-passwd/group.master", GROUPS),
        ] {
            let Ok(text) = std::fs::read_to_string(file) else {
                continue;
            };
            let on_disk: Vec<(String, u32)> = text
                .lines()
                .filter_map(|l| {
                    let mut f = l.split(':');
                    let name = f.next()?.to_string();
                    let id = f.nth(1)?.parse().ok()?;
                    Some((name, id))
                })
                .collect();
            let ours: Vec<(String, u32)> =
                table.iter().map(|(n, id)| (n.to_string(), *id)).collect();
            assert_eq!(ours, on_disk, "{file}");
        }
    }

    #[test]
    fn names_follow_adduser() {
        for ok in ["root", "www-data", "_apt", "svc_1", "a"] {
            assert_eq!(name_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            "Root",
            "1000",
            "-x",
            "a b",
            "a:b",
            "x\n",
            &"a".repeat(32),
        ] {
            assert!(name_problem(bad).is_some(), "{bad:?}");
        }
        assert_eq!(user_id("www-data"), Some(33));
        assert_eq!(group_id("adm"), Some(4));
        assert_eq!(user_id("adm"), None);
    }
}
