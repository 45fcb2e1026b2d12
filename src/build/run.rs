//! One build in one container: create it from the builder image (labelled, no network unless
//! the recipe opts in, and then a bridge network of its own; CPU/memory limits), resolve the
//! build user, upload the sources as a streamed tar owned by that user, `exec` the test
//! command then the build command with live logs, and download `/out` as a tar stream into a
//! staging directory (`docker::download_to_dir`). All of it goes through the caller's
//! [`Session`], whose guard removes the container (and its network) on every path; every
//! await here also stops on its cancel token.
//!
//! Cache directories (`[build] cache`) are named volumes made by the caller and mounted here;
//! a fresh volume's root is owned by root, so before the first command a root exec hands
//! them to the build user (`chown -R`, cheap when nothing changes; also fixes a cache left by
//! an earlier build user).

use std::collections::VecDeque;
use std::path::Path;

use anyhow::Context;

use crate::docker::{ContainerSpec, ExecSpec, Session};
use crate::recipe::{BuildNetwork, BuildSpec};
use crate::report::Reporter;

use super::source::{self, SourceEntry, UploadLayout};

/// Lines of a failing command's log shown in the error.
const TAIL_LINES: usize = 20;

/// Everything one container run needs.
pub(super) struct Job<'a> {
    pub name: &'a str,
    pub spec: &'a BuildSpec,
    pub image_id: &'a str,
    /// `KEY=value` pairs for the container environment.
    pub env: Vec<String>,
    pub entries: Vec<SourceEntry>,
    /// `(volume name, absolute path)` of each cache directory; the volumes exist already.
    pub caches: Vec<(String, String)>,
}

/// Runs `job` in a container of `session` (stage `build`) and leaves the contents of `/out`
/// in `staged`.
pub(super) async fn run(
    session: &Session,
    job: Job<'_>,
    reporter: &Reporter,
    staged: &Path,
) -> anyhow::Result<()> {
    let spec = job.spec;
    let name = container_name(job.name, session.run_id());
    // A build that needs the network gets a bridge network of its own, never the engine's
    // default bridge: it cannot reach other containers on the host, and it works on an
    // engine whose default bridge is missing (`--bridge=none`, or `docker0` gone after the
    // engine started). The session's guard removes the network with the container.
    let network = match spec.network {
        BuildNetwork::None => "none".to_string(),
        BuildNetwork::Bridge => {
            session.create_network(&name, false).await?;
            name.clone()
        }
    };
    let container = ContainerSpec {
        name,
        what: format!("the build container for `{}`", job.name),
        image: job.image_id.to_string(),
        // PID 1 only keeps the container alive; the work happens in execs, each with an
        // explicit user. It runs as root so that the root exec that hands the cache volumes
        // to the build user keeps its capabilities under no-new-privileges (an exec gets no
        // capability in a container whose process is not root's).
        cmd: Some(vec!["sleep".into(), "infinity".into()]),
        user: Some("0:0".into()),
        env: Some(job.env.clone()),
        network_mode: Some(network),
        network_disabled: Some(spec.network == BuildNetwork::None),
        // The builder image ships setuid programs (su, passwd): a build never gains privileges.
        no_new_privileges: true,
        cpus: spec.cpus,
        memory: spec.memory,
        volumes: job.caches.clone(),
        ..Default::default()
    };
    let id = session.create(&container).await?;
    let engine = session.engine();

    let user = resolve_user(session, &id, spec.user.as_deref(), job.image_id).await?;
    reporter.verbose(format!(
        "{}: building as uid {} gid {} (home {})",
        job.name, user.uid, user.gid, user.home
    ));

    let workdir = spec.workdir.clone();
    let mut extra_dirs = vec!["/out".to_string()];
    if user.home != "/" && user.home != workdir && user.home != "/out" {
        extra_dirs.push(user.home.clone());
    }
    let layout = UploadLayout {
        workdir: workdir.clone(),
        extra_dirs,
        uid: user.uid,
        gid: user.gid,
    };
    let (stream, writer) = source::tar_stream(job.entries, layout);
    let uploaded = session
        .cancellable(engine.upload_tar_stream(&id, "/", stream))
        .await;
    // A read error on our side ends the stream early; report that cause first.
    let written = writer.await.context("the source upload task failed")?;
    written?;
    uploaded?.with_context(|| format!("could not upload the sources of `{}`", job.name))?;

    session.start(&id, &container.what).await?;

    let exec_env = vec![format!("HOME={}", user.home)];
    let user_spec = format!("{}:{}", user.uid, user.gid);
    if !job.caches.is_empty() && user.uid != 0 {
        let mut chown = vec!["chown".to_string(), "-R".to_string(), user_spec.clone()];
        chown.extend(job.caches.iter().map(|(_, path)| path.clone()));
        let root = ExecSpec {
            cmd: chown.clone(),
            user: "0:0".into(),
            workdir: "/".into(),
            env: exec_env.clone(),
        };
        let (code, tail) = exec(session, &id, &root, job.name, reporter).await?;
        if code != 0 {
            return Err(crate::error::failed(format!(
                "could not give the build user ({user_spec}) the cache directories of `{}` \
                 (`{}` exited with {code}{}); the builder image needs `chown`, or remove \
                 `cache` from [build]",
                job.name,
                display_command(&chown),
                tail.last().map(|l| format!(": {l}")).unwrap_or_default()
            )));
        }
    }
    let steps = spec
        .test
        .iter()
        .map(|t| ("test", t))
        .chain(std::iter::once(("build", &spec.command)));
    for (what, cmd) in steps {
        reporter.status(
            if what == "test" {
                "Testing"
            } else {
                "Compiling"
            },
            format!("{} ({})", job.name, display_command(&cmd.0)),
        );
        let exec_spec = ExecSpec {
            cmd: cmd.0.clone(),
            user: user_spec.clone(),
            workdir: workdir.clone(),
            env: exec_env.clone(),
        };
        let (code, tail) = exec(session, &id, &exec_spec, job.name, reporter).await?;
        if code != 0 {
            let mut msg = format!(
                "{what} command of `{}` failed with exit code {code}: {}",
                job.name,
                display_command(&cmd.0)
            );
            if tail.is_empty() {
                msg.push_str("\n  (the command printed nothing)");
            } else {
                msg.push_str(&format!("\n  last {} lines of its log:", tail.len()));
                for line in &tail {
                    msg.push_str("\n  | ");
                    msg.push_str(line);
                }
            }
            return Err(crate::error::failed(msg));
        }
    }

    session
        .cancellable(crate::docker::download_to_dir(engine, &id, "/out", staged))
        .await?
        .with_context(|| format!("could not download /out of the `{}` build", job.name))?;
    Ok(())
}

/// `builder-build-<recipe>-<run id>`: unique per run and recipe, so the guard can track the
/// container by name before it exists.
fn container_name(recipe: &str, run_id: &str) -> String {
    format!("builder-build-{}-{run_id}", super::docker_name_part(recipe))
}

/// Runs one command in the build container; returns its exit code and the last lines of its
/// log (every line also goes to the reporter).
async fn exec(
    session: &Session,
    id: &str,
    exec: &ExecSpec,
    name: &str,
    reporter: &Reporter,
) -> anyhow::Result<(i64, Vec<String>)> {
    let mut tail = Tail::default();
    let code = session
        .exec(id, exec, |line| {
            reporter.log(name, line);
            tail.push(line);
        })
        .await?;
    Ok((code, tail.lines.into_iter().collect()))
}

#[derive(Default)]
struct Tail {
    lines: VecDeque<String>,
}

impl Tail {
    fn push(&mut self, line: &str) {
        if self.lines.len() == TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line.to_string());
    }
}

/// A command as a user would type it: arguments with spaces or quotes are single-quoted.
pub(super) fn display_command(cmd: &[String]) -> String {
    cmd.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The numeric identity builds run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BuildUser {
    pub uid: u64,
    pub gid: u64,
    pub home: String,
}

/// Picks the build user: the recipe's `user`, else the image's `User`, else the first regular
/// account (uid 1000-59999) in the image's /etc/passwd, else root.
async fn resolve_user(
    session: &Session,
    container: &str,
    wanted: Option<&str>,
    image: &str,
) -> anyhow::Result<BuildUser> {
    let passwd = session
        .read_file(container, "/etc/passwd")
        .await
        .unwrap_or_default();
    let wanted = match wanted {
        Some(w) => Some(w.to_string()),
        None => session
            .cancellable(session.engine().inspect_image(image))
            .await?
            .ok()
            .flatten()
            .and_then(|i| i.user)
            .filter(|u| !u.is_empty()),
    };
    pick_user(&passwd, wanted.as_deref())
}

/// Pure part of [`resolve_user`]: `passwd` is the image's /etc/passwd.
pub(super) fn pick_user(passwd: &str, wanted: Option<&str>) -> anyhow::Result<BuildUser> {
    let accounts: Vec<(&str, u64, u64, &str)> = passwd
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 7 {
                return None;
            }
            Some((f[0], f[2].parse().ok()?, f[3].parse().ok()?, f[5]))
        })
        .collect();
    let Some(wanted) = wanted else {
        return Ok(accounts
            .iter()
            .find(|a| (1000..60000).contains(&a.1))
            .map(|a| BuildUser {
                uid: a.1,
                gid: a.2,
                home: a.3.to_string(),
            })
            .unwrap_or(BuildUser {
                uid: 0,
                gid: 0,
                home: "/root".into(),
            }));
    };
    let (user, group) = match wanted.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (wanted, None),
    };
    let found = accounts
        .iter()
        .find(|a| a.0 == user || user.parse::<u64>().ok() == Some(a.1));
    let uid = match (user.parse::<u64>(), found) {
        (Ok(n), _) => n,
        (Err(_), Some(a)) => a.1,
        (Err(_), None) => {
            return Err(crate::error::usage(format!(
                "build user `{user}` does not exist in the builder image; set `user` in [build] \
                 to a numeric `uid:gid` or to one of: {}",
                accounts.iter().map(|a| a.0).collect::<Vec<_>>().join(", ")
            )))
        }
    };
    let gid = match group {
        Some(g) => g.parse::<u64>().map_err(|_| {
            crate::error::usage(format!(
                "build group `{g}` in `user = \"{wanted}\"` must be numeric (e.g. `1000:1000`)"
            ))
        })?,
        None => found.map(|a| a.2).unwrap_or(uid),
    };
    let home = found
        .map(|a| a.3.to_string())
        .filter(|h| h.starts_with('/'))
        .unwrap_or_else(|| "/tmp".into());
    Ok(BuildUser { uid, gid, home })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_are_valid_for_any_package_name() {
        let n = container_name("libfoo++", "0190abc-123456");
        assert_eq!(n, "builder-build-libfoo__-0190abc-123456");
        // Docker: [a-zA-Z0-9][a-zA-Z0-9_.-]+
        assert!(n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)));
        assert_eq!(container_name("backend", "r"), "builder-build-backend-r");
    }

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        builder:x:1000:1000::/home/builder:/bin/sh\n\
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";

    #[test]
    fn user_resolution() {
        let u = |w| pick_user(PASSWD, w).unwrap();
        assert_eq!(
            u(None),
            BuildUser {
                uid: 1000,
                gid: 1000,
                home: "/home/builder".into()
            }
        );
        assert_eq!(u(Some("builder")).uid, 1000);
        assert_eq!(u(Some("0")).home, "/root");
        assert_eq!(
            u(Some("4242:4343")),
            BuildUser {
                uid: 4242,
                gid: 4343,
                home: "/tmp".into()
            }
        );
        let err = pick_user(PASSWD, Some("alice")).unwrap_err();
        assert!(err.to_string().contains("builder"), "{err}");
        assert_eq!(crate::error::exit_code(&err), crate::error::EXIT_USAGE);
        assert_eq!(pick_user("", None).unwrap().uid, 0);
    }

    #[test]
    fn commands_display_like_a_shell() {
        let c = |v: &[&str]| display_command(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(c(&["go", "test", "./..."]), "go test ./...");
        assert_eq!(
            c(&["sh", "-c", "echo 'hi' there"]),
            r#"sh -c 'echo '\''hi'\'' there'"#
        );
    }
}
