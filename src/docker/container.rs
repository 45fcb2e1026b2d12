//! Containers as builder describes them: [`ContainerSpec`] (what to run, how it is limited,
//! which network it is on, what it publishes) turned into the engine's create request, and the
//! work done inside a running container: [`Session::exec`] with live output and
//! [`Session::read_file`].

use std::collections::HashMap;
use std::io::Read;

use anyhow::{Context, Result};
use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, EndpointSettings, ExecConfig, HostConfig, Mount, MountType,
    NetworkingConfig, PortBinding, RestartPolicy as DockerRestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;

use super::engine::Session;

/// A container to create. Fields left at their defaults are the engine's defaults.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    /// The container's name (also its DNS name on its networks); empty: the engine picks one.
    pub name: String,
    /// What the container is, for error messages: "the build container for `backend`".
    pub what: String,
    /// Image id or reference.
    pub image: String,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub user: Option<String>,
    /// `KEY=value` pairs.
    pub env: Option<Vec<String>>,
    /// Labels besides the session's (all of them for [`super::Engine::create_container`]).
    pub labels: HashMap<String, String>,
    pub hostname: Option<String>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<i64>,
    /// `none`, `bridge` or a network name.
    pub network_mode: Option<String>,
    pub network_disabled: Option<bool>,
    /// DNS aliases on the `network_mode` network.
    pub aliases: Vec<String>,
    pub restart: Option<RestartPolicy>,
    /// Container ports (tcp) published on 127.0.0.1, each on a free port the engine picks
    /// (read back with [`super::ContainerInfo::host_port`]).
    pub publish: Vec<u16>,
    pub cap_drop_all: bool,
    pub no_new_privileges: bool,
    /// CPUs (may be fractional).
    pub cpus: Option<f64>,
    /// Bytes.
    pub memory: Option<u64>,
    /// `(volume name, absolute path)` of each named volume to mount.
    pub volumes: Vec<(String, String)>,
}

/// A restart policy: `always`, `unless-stopped`, `no` or (anything else) `on-failure` with
/// at most `max_retries` retries.
#[derive(Debug, Clone)]
pub struct RestartPolicy {
    pub name: String,
    pub max_retries: Option<i64>,
}

fn restart_policy_name(name: &str) -> RestartPolicyNameEnum {
    match name {
        "always" => RestartPolicyNameEnum::ALWAYS,
        "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
        "no" => RestartPolicyNameEnum::NO,
        _ => RestartPolicyNameEnum::ON_FAILURE,
    }
}

fn body(spec: &ContainerSpec, labels: HashMap<String, String>) -> ContainerCreateBody {
    let bind = |port: &u16| {
        (
            format!("{port}/tcp"),
            Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".into()),
                // Empty: the engine picks a free port; read it back from inspect.
                host_port: Some(String::new()),
            }]),
        )
    };
    let host = HostConfig {
        network_mode: spec.network_mode.clone(),
        restart_policy: spec.restart.as_ref().map(|r| DockerRestartPolicy {
            name: Some(restart_policy_name(&r.name)),
            maximum_retry_count: r.max_retries,
        }),
        port_bindings: (!spec.publish.is_empty()).then(|| spec.publish.iter().map(bind).collect()),
        cap_drop: spec.cap_drop_all.then(|| vec!["ALL".into()]),
        security_opt: spec
            .no_new_privileges
            .then(|| vec!["no-new-privileges".into()]),
        nano_cpus: spec.cpus.map(super::nano_cpus),
        memory: spec.memory.map(|m| m as i64),
        mounts: (!spec.volumes.is_empty()).then(|| {
            spec.volumes
                .iter()
                .map(|(volume, path)| Mount {
                    target: Some(path.clone()),
                    source: Some(volume.clone()),
                    typ: Some(MountType::VOLUME),
                    ..Default::default()
                })
                .collect()
        }),
        ..Default::default()
    };
    let networking_config = match (&spec.network_mode, spec.aliases.is_empty()) {
        (Some(network), false) => Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                network.clone(),
                EndpointSettings {
                    aliases: Some(spec.aliases.clone()),
                    ..Default::default()
                },
            )])),
        }),
        _ => None,
    };
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: spec.entrypoint.clone(),
        cmd: spec.cmd.clone(),
        user: spec.user.clone(),
        env: spec.env.clone(),
        labels: Some(labels),
        hostname: spec.hostname.clone(),
        stop_signal: spec.stop_signal.clone(),
        stop_timeout: spec.stop_timeout,
        exposed_ports: (!spec.publish.is_empty())
            .then(|| spec.publish.iter().map(|p| format!("{p}/tcp")).collect()),
        network_disabled: spec.network_disabled,
        host_config: Some(host),
        networking_config,
        ..Default::default()
    }
}

/// Creates the container; returns its id. The error is the engine's.
pub(super) async fn create(
    docker: &Docker,
    spec: &ContainerSpec,
    labels: HashMap<String, String>,
) -> Result<String> {
    let opts = (!spec.name.is_empty()).then(|| {
        CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build()
    });
    Ok(docker.create_container(opts, body(spec, labels)).await?.id)
}

/// A command to run in a running container.
#[derive(Debug, Clone)]
pub struct ExecSpec {
    pub cmd: Vec<String>,
    /// `uid:gid` or a user name.
    pub user: String,
    pub workdir: String,
    /// `KEY=value` pairs.
    pub env: Vec<String>,
}

impl Session {
    /// Runs `exec` in the container `id`, passing each line of its output (stdout and
    /// stderr, without the line end; a last unterminated line too) to `line`; returns its
    /// exit code. Stops on cancel.
    pub async fn exec(&self, id: &str, exec: &ExecSpec, mut line: impl FnMut(&str)) -> Result<i64> {
        let docker = self.engine().client();
        let shown = exec.cmd.join(" ");
        let config = ExecConfig {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(exec.cmd.clone()),
            env: Some(exec.env.clone()),
            user: Some(exec.user.clone()),
            working_dir: Some(exec.workdir.clone()),
            ..Default::default()
        };
        let stage = self.stage();
        let created = self
            .cancellable(docker.create_exec(id, config))
            .await?
            .with_context(|| format!("could not run `{shown}` in the {stage} container"))?;
        let started = self
            .cancellable(docker.start_exec(&created.id, None::<StartExecOptions>))
            .await?
            .with_context(|| format!("could not run `{shown}` in the {stage} container"))?;
        let StartExecResults::Attached { mut output, .. } = started else {
            anyhow::bail!("the engine detached the exec of `{shown}`");
        };
        let mut partial_out = String::new();
        let mut partial_err = String::new();
        loop {
            let next = self.cancellable(output.next()).await?;
            let Some(item) = next else { break };
            let item = item.with_context(|| format!("lost the log of `{shown}`"))?;
            let (buf, bytes) = match item {
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    (&mut partial_out, message)
                }
                LogOutput::StdErr { message } => (&mut partial_err, message),
                LogOutput::StdIn { .. } => continue,
            };
            buf.push_str(&String::from_utf8_lossy(&bytes));
            while let Some(pos) = buf.find('\n') {
                let l: String = buf.drain(..=pos).collect();
                line(l.trim_end_matches(['\n', '\r']));
            }
        }
        for rest in [partial_out, partial_err] {
            if !rest.is_empty() {
                line(&rest);
            }
        }
        let inspected = self
            .cancellable(docker.inspect_exec(&created.id))
            .await?
            .with_context(|| format!("could not read the exit code of `{shown}`"))?;
        Ok(inspected.exit_code.unwrap_or(-1))
    }

    /// Reads one small file out of a (created or running) container. Stops on cancel.
    pub async fn read_file(&self, container: &str, path: &str) -> Result<String> {
        let opts = DownloadFromContainerOptionsBuilder::default()
            .path(path)
            .build();
        let mut stream = self
            .engine()
            .client()
            .download_from_container(container, Some(opts));
        let mut raw = Vec::new();
        while let Some(chunk) = self.cancellable(stream.next()).await? {
            raw.extend_from_slice(&chunk.with_context(|| format!("could not read `{path}`"))?);
        }
        let mut archive = tar::Archive::new(raw.as_slice());
        for entry in archive.entries().context("bad tar from the engine")? {
            let mut entry = entry.context("bad tar from the engine")?;
            if entry.header().entry_type().is_file() {
                let mut s = String::new();
                entry
                    .read_to_string(&mut s)
                    .with_context(|| format!("could not read `{path}`"))?;
                return Ok(s);
            }
        }
        anyhow::bail!("`{path}` is not a file in the container")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_become_the_engine_request() {
        let spec = ContainerSpec {
            name: "lb".into(),
            image: "sha256:abc".into(),
            network_mode: Some("net".into()),
            aliases: vec!["web".into()],
            publish: vec![8080],
            cap_drop_all: true,
            no_new_privileges: true,
            cpus: Some(1.5),
            volumes: vec![("v".into(), "/c".into())],
            restart: Some(RestartPolicy {
                name: "on-failure".into(),
                max_retries: Some(3),
            }),
            ..Default::default()
        };
        let b = body(&spec, HashMap::from([("a".into(), "b".into())]));
        let host = b.host_config.unwrap();
        assert_eq!(host.nano_cpus, Some(1_500_000_000));
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(
            host.restart_policy.unwrap().name,
            Some(RestartPolicyNameEnum::ON_FAILURE)
        );
        let bound = &host.port_bindings.unwrap()["8080/tcp"];
        assert_eq!(
            bound.as_ref().unwrap()[0].host_ip.as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(b.exposed_ports, Some(vec!["8080/tcp".to_string()]));
        let endpoints = b.networking_config.unwrap().endpoints_config.unwrap();
        assert_eq!(endpoints["net"].aliases, Some(vec!["web".to_string()]));
        assert_eq!(host.mounts.unwrap()[0].source.as_deref(), Some("v"));
        let plain = body(&ContainerSpec::default(), HashMap::new());
        assert!(plain.networking_config.is_none());
        assert!(plain.host_config.unwrap().port_bindings.is_none());
    }
}
