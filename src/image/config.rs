//! The image config: what a container of the image starts with (entrypoint, env, user,
//! ports, labels) and where it came from (history, `created`). Everything here is a pure
//! function of the recipe, the base, the .deb and SOURCE_DATE_EPOCH, so the config's sha256
//! (the image id) is reproducible.

use std::collections::BTreeMap;

use crate::oci::spec::{Empty, History, ImageConfig, RootFs, RunConfig};
use crate::recipe::{ImageSpec, Package};

/// PATH when neither the base nor the recipe sets one (Docker's default).
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Labels builder sets; a recipe label may override the OCI ones but not `io.builder.*`.
pub(crate) const LABEL_DEB_SHA256: &str = "io.builder.deb.sha256";

/// Everything the config is made from.
pub(crate) struct ConfigInput<'a> {
    pub spec: &'a ImageSpec,
    pub package: &'a Package,
    pub base_name: &'a str,
    /// The base's environment, `KEY=value`.
    pub base_env: &'a [String],
    pub deb_file_name: &'a str,
    pub deb_sha256: &'a crate::digest::Digest,
    pub base_diff_id: &'a crate::digest::Digest,
    /// The dependency layer: its diff_id and the packages it holds (`name version`).
    pub deps: Option<(&'a crate::digest::Digest, &'a [String])>,
    pub app_diff_id: &'a crate::digest::Digest,
    /// SOURCE_DATE_EPOCH.
    pub created: u64,
    pub revision: Option<&'a str>,
    pub source: Option<&'a str>,
}

/// `KEY=value` entries: PATH first, then the base's, then the recipe's; a later value of
/// a key replaces the earlier one in place, so each key appears once.
pub(crate) fn merge_env(base: &[String], recipe: &BTreeMap<String, String>) -> Vec<String> {
    let mut out: Vec<(String, String)> = vec![("PATH".into(), DEFAULT_PATH.into())];
    let mut set = |k: &str, v: &str| match out.iter_mut().find(|(ok, _)| ok == k) {
        Some(slot) => slot.1 = v.to_string(),
        None => out.push((k.to_string(), v.to_string())),
    };
    for e in base {
        let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
        set(k, v);
    }
    for (k, v) in recipe {
        set(k, v);
    }
    out.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

pub(crate) fn image_config(i: &ConfigInput<'_>) -> ImageConfig {
    let created = crate::timefmt::rfc3339_secs(i.created as i64);
    let spec = i.spec;
    let mut labels = BTreeMap::new();
    let mut oci = |k: &str, v: &str| {
        labels.insert(format!("org.opencontainers.image.{k}"), v.to_string());
    };
    oci("title", &spec.name);
    oci("version", &i.package.version());
    oci("created", &created);
    if !i.package.synopsis.is_empty() {
        oci("description", &i.package.synopsis);
    }
    if let Some(r) = i.revision {
        oci("revision", r);
    }
    if let Some(s) = i.source {
        oci("source", s);
    }
    if let Some(l) = &i.package.license {
        oci("licenses", l);
    }
    if let Some(h) = &i.package.homepage {
        oci("url", h);
    }
    labels.insert("io.builder.base".into(), i.base_name.to_string());
    for (k, v) in &spec.labels {
        if !k.starts_with("io.builder.") {
            labels.insert(k.clone(), v.clone());
        }
    }
    labels.insert(LABEL_DEB_SHA256.into(), i.deb_sha256.hex());

    let exposed_ports = spec
        .ports
        .iter()
        .map(|p| (format!("{p}/tcp"), Empty {}))
        .collect();
    ImageConfig {
        created: Some(created.clone()),
        architecture: debian_to_oci_arch(&i.package.architecture).to_string(),
        os: "linux".into(),
        config: RunConfig {
            user: spec.user.clone(),
            exposed_ports,
            env: merge_env(i.base_env, &spec.env),
            entrypoint: spec.entrypoint.clone(),
            cmd: spec.cmd.clone(),
            working_dir: spec.workdir.clone(),
            labels,
        },
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: std::iter::once(i.base_diff_id.to_string())
                .chain(i.deps.map(|(d, _)| d.to_string()))
                .chain(std::iter::once(i.app_diff_id.to_string()))
                .collect(),
        },
        history: std::iter::once(History {
            created: Some(created.clone()),
            created_by: Some(format!("builder: runtime base `{}`", i.base_name)),
            comment: Some("base-images/".to_string() + i.base_name + ".toml"),
            empty_layer: false,
        })
        .chain(i.deps.map(|(_, pkgs)| History {
            created: Some(created.clone()),
            created_by: Some(format!(
                "builder: dependencies of {} ({} packages)",
                i.deb_file_name,
                pkgs.len()
            )),
            comment: Some(pkgs.join(", ")),
            empty_layer: false,
        }))
        .chain(std::iter::once(History {
            created: Some(created),
            created_by: Some(format!("builder: files of {}", i.deb_file_name)),
            comment: Some(i.deb_sha256.to_string()),
            empty_layer: false,
        }))
        .collect(),
    }
}

/// The OCI/Go architecture name for a Debian architecture. `all` takes the machine's own:
/// the bases are made (debootstrap) for the host's architecture.
pub(crate) fn debian_to_oci_arch(arch: &str) -> &str {
    match arch {
        "all" => host_oci_arch(),
        "amd64" => "amd64",
        "i386" => "386",
        "armhf" | "armel" => "arm",
        "ppc64el" => "ppc64le",
        "mips64el" => "mips64le",
        "mipsel" => "mipsle",
        other => other,
    }
}

fn host_oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        _ => "amd64",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_keeps_one_entry_per_key_in_first_seen_order() {
        let base = vec!["SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt".to_string()];
        let mut recipe = BTreeMap::new();
        recipe.insert("PATH".to_string(), "/usr/bin".to_string());
        recipe.insert("PORT".to_string(), "8080".to_string());
        assert_eq!(
            merge_env(&base, &recipe),
            [
                "PATH=/usr/bin",
                "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
                "PORT=8080"
            ]
        );
        assert_eq!(
            merge_env(&[], &BTreeMap::new()),
            [format!("PATH={DEFAULT_PATH}")]
        );
    }
}
