//! Real apt against builder's repositories, two ways: [`AptContainer`], apt in a container
//! made from the `bookworm` base (no registry needed) with the repositories mounted
//! read-only; and [`HostApt`], the host's apt with a private root (its own sources, lists,
//! cache and status; the host's apt state is never read or written). Both use the project's
//! public key as `signed-by` with date checks on.

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::*;

/// apt options: only our source list, date checks on, no sandbox user (read-only bind mount
/// owned by root).
pub const APT: &str = "apt-get -q -o Dir::Etc::SourceList=/etc/apt/builder.list \
    -o Dir::Etc::SourceParts=- -o Acquire::Check-Date=true -o Acquire::Check-Valid-Until=true \
    -o APT::Sandbox::User=root";

/// The `bookworm` base image (made once, shared through the test cache).
pub fn bookworm_image() -> String {
    base_image(&repo(), "bookworm")
}

/// The Docker tag of base `name` of `project`, made first if needed (`base build`).
pub fn base_image(project: &Path, name: &str) -> String {
    let mut c = builder();
    c.arg("--project")
        .arg(project)
        .args(["base", "build", name]);
    sh(&mut c);
    let mut c = builder();
    c.arg("--project")
        .arg(project)
        .args(["--json", "base", "list"]);
    let list: serde_json::Value = serde_json::from_str(&sh(&mut c)).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .and_then(|r| r["tag"].as_str())
        .unwrap_or_else(|| panic!("{name} in `base list`: {list}"))
        .to_string()
}

/// apt options for a container of [`AptContainer::start_online`]: the host's sources only.
pub const HOST_SOURCES: &str = "apt-get -q -o Dir::Etc::SourceList=/dev/null \
    -o Dir::Etc::SourceParts=/host-sources -o Acquire::Check-Date=true \
    -o APT::Sandbox::User=root";

/// A container with `repos` mounted at `/repos` (read-only) and `keyring` as
/// `/etc/apt/keyrings/builder.gpg`; removed on drop.
pub struct AptContainer {
    pub id: String,
}

impl Drop for AptContainer {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl AptContainer {
    pub fn start(repos: &Path, keyring: &Path) -> AptContainer {
        Self::start_with(
            &["--network", "none"],
            &[
                (repos.to_path_buf(), "/repos"),
                (keyring.to_path_buf(), "/etc/apt/keyrings/builder.gpg"),
            ],
        )
    }

    /// A container on the host's network (it needs no default bridge, which an engine may
    /// lack) with the host's apt sources (`/etc/apt/sources.list.d`, their `Signed-By`
    /// keyrings being the base's `debian-archive-keyring`), so `apt-get` installs from the host's Debian mirror, and
    /// `debs` mounted read-only at `/debs`. Run apt with [`HOST_SOURCES`].
    pub fn start_online(debs: &Path) -> AptContainer {
        Self::start_with(
            &["--network", "host"],
            &[
                (debs.to_path_buf(), "/debs"),
                ("/etc/apt/sources.list.d".into(), "/host-sources"),
            ],
        )
    }

    /// A container of the `bookworm` base running `sleep`, labelled as a test's, with
    /// `docker run` options `opts` and `mounts` (host path, container path) read-only.
    fn start_with(opts: &[&str], mounts: &[(std::path::PathBuf, &str)]) -> AptContainer {
        let image = bookworm_image();
        let run_id = format!("apt-test-{}", std::process::id());
        let mut c = Command::new("docker");
        c.args(["run", "-d"])
            .args(opts)
            .args(["--label", "io.builder=1", "--label"])
            .arg(format!("io.builder.run={run_id}"))
            .args(["--label", "io.builder.stage=test"]);
        for (from, to) in mounts {
            c.arg("-v").arg(format!("{}:{to}:ro", from.display()));
        }
        let out = c.args([&image, "sleep", "3600"]).output().unwrap();
        // A container that was created but could not start is removed on drop too.
        let container = AptContainer {
            id: text(&out.stdout).trim().to_string(),
        };
        assert!(
            out.status.success(),
            "docker run {opts:?}: {}",
            text(&out.stderr)
        );
        container
    }

    pub fn exec(&self, script: &str) -> Output {
        Command::new("docker")
            .args([
                "exec",
                "-e",
                "DEBIAN_FRONTEND=noninteractive",
                "-e",
                "LC_ALL=C",
            ])
            .arg(&self.id)
            .args(["sh", "-c", script])
            .output()
            .unwrap()
    }

    /// `/etc/apt/builder.list` naming `/repos/<dir>` with suite `suite`, and apt's lists
    /// emptied: the next `update` fetches and verifies everything anew.
    pub fn source(dir: &str, suite: &str) -> String {
        format!(
            "echo 'deb [signed-by=/etc/apt/keyrings/builder.gpg] file:/repos/{dir} {suite} main' \
             > /etc/apt/builder.list && rm -rf /var/lib/apt/lists/*"
        )
    }

    /// `apt-get update` of `/repos/<dir>` (suite `suite`) verifies signatures, dates and
    /// index hashes without a warning, and `apt-cache policy` sees `package`.
    pub fn verifies(&self, dir: &str, suite: &str, package: &str) -> Result<(), String> {
        let o = self.exec(&format!(
            "{} && {APT} update && apt-cache -o Dir::Etc::SourceList=/etc/apt/builder.list \
             -o Dir::Etc::SourceParts=- policy {package}",
            Self::source(dir, suite)
        ));
        let t =
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
        if !o.status.success()
            || t.contains("W:")
            || t.contains("E:")
            || !t.contains("Candidate: ")
            || t.contains("Candidate: (none)")
        {
            return Err(t);
        }
        Ok(())
    }
}

/// Real apt on the host with a private root: its own sources.list, lists, cache and status; the host's apt is
/// never read or written.
pub struct HostApt {
    dir: tempfile::TempDir,
}

impl HostApt {
    /// Where `apt-get download` puts files (the commands' working directory).
    pub fn downloads(&self) -> std::path::PathBuf {
        self.dir.path().join("dl")
    }
}

impl HostApt {
    pub fn new(repo_env_dir: &Path, keyring: &Path) -> HostApt {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in [
            "var/lib/apt/lists/partial",
            "var/cache/apt/archives/partial",
            "etc/apt",
            "dl",
        ] {
            fs::create_dir_all(d.join(sub)).unwrap();
        }
        fs::write(d.join("status"), "").unwrap();
        fs::write(
            d.join("sources.list"),
            format!(
                "deb [signed-by={}] file:{} dev main\n",
                keyring.display(),
                repo_env_dir.display()
            ),
        )
        .unwrap();
        HostApt { dir }
    }

    pub fn run(&self, tool: &str, args: &[&str]) -> Output {
        let d = self.dir.path().display().to_string();
        let opts = [
            format!("Dir={d}"),
            format!("Dir::State::status={d}/status"),
            format!("Dir::Etc::SourceList={d}/sources.list"),
            "Dir::Etc::SourceParts=-".into(),
            "Dir::Etc::TrustedParts=-".into(),
            "Dir::Bin::Methods=/usr/lib/apt/methods".into(),
            "Dir::Log=/tmp".into(),
            "Acquire::Check-Date=true".into(),
            "Acquire::Check-Valid-Until=true".into(),
            "APT::Sandbox::User=root".into(),
            "Debug::NoLocking=1".into(),
            "APT::Architecture=amd64".into(),
        ];
        let mut cmd = Command::new(tool);
        for o in &opts {
            cmd.arg("-o").arg(o);
        }
        cmd.args(args)
            .current_dir(self.dir.path().join("dl"))
            .env("LC_ALL", "C")
            .output()
            .unwrap()
    }

    /// `apt-get update`; Ok(stdout+stderr) when it succeeded with no warnings or errors.
    pub fn update(&self) -> Result<String, String> {
        let out = self.run("apt-get", &["update"]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let problems = text
            .lines()
            .any(|l| l.starts_with("W:") || l.starts_with("E:") || l.starts_with("Err:"));
        if out.status.success() && !problems {
            Ok(text)
        } else {
            Err(text)
        }
    }

    pub fn madison(&self, pkg: &str) -> Vec<String> {
        let out = self.run("apt-cache", &["madison", pkg]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split('|').nth(1).map(|v| v.trim().to_string()))
            .collect()
    }

    pub fn text(out: &Output) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}
