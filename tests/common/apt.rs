//! Real apt in a container: a `bookworm` base made by builder (no registry needed), the
//! repositories mounted read-only, the project's public key as `signed-by`, date checks on.

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
    let root = repo();
    let mut c = builder();
    c.arg("--project")
        .arg(&root)
        .args(["base", "build", "bookworm"]);
    sh(&mut c);
    let mut c = builder();
    c.arg("--project")
        .arg(&root)
        .args(["--json", "base", "list"]);
    let list: serde_json::Value = serde_json::from_str(&sh(&mut c)).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "bookworm")
        .and_then(|r| r["tag"].as_str())
        .expect("bookworm in `base list`")
        .to_string()
}

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
        let image = bookworm_image();
        let run_id = format!("apt-test-{}", std::process::id());
        let out = sh(Command::new("docker")
            .args(["run", "-d", "--network", "none"])
            .args(["--label", "io.builder=1", "--label"])
            .arg(format!("io.builder.run={run_id}"))
            .args(["--label", "io.builder.stage=test"])
            .arg("-v")
            .arg(format!("{}:/repos:ro", repos.display()))
            .arg("-v")
            .arg(format!(
                "{}:/etc/apt/keyrings/builder.gpg:ro",
                keyring.display()
            ))
            .args([&image, "sleep", "3600"]));
        AptContainer {
            id: out.trim().to_string(),
        }
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
