//! A pool of Docker engines for builds: which engines (`BUILDER_ENGINES` or `engines.toml`),
//! how to reach them (Docker's endpoint conventions: `unix:///path`, `tcp://host:port`, TLS
//! client certificates in a `DOCKER_CERT_PATH`-style directory) and what each can take
//! (`/info`: CPUs, memory, architecture).
//!
//! Without either setting the pool is the one engine of `DOCKER_HOST`, as before pools
//! existed. An engine that does not answer when the pool is made is reported and left out;
//! only a pool with no engine left is an error.
//!
//! `ssh://` is refused: bollard 0.21 has an `ssh` feature, but it drives the system `ssh`
//! client through the `openssh` crate (a multiplexed master connection per engine), which
//! builder does not enable or test; `ssh -L` to a local unix socket, or TLS, reach the same
//! engine through transports builder does test.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::Engine;
use crate::diag::{self, Collector, Diagnostics};
use crate::report::Reporter;

/// Environment variable listing the engines: `[name=]endpoint` separated by commas.
pub(crate) const ENV_ENGINES: &str = "BUILDER_ENGINES";
/// The project file listing the engines (`[[engine]]` tables).
pub(crate) const FILE: &str = "engines.toml";
/// The name of the one engine of a project without a pool configuration.
pub(crate) const DEFAULT_NAME: &str = "default";

/// How long an engine may take to answer when the pool is made (version, ping, info).
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// One engine's address and how to authenticate to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Name in messages, `plan` and reports.
    pub name: String,
    /// `unix:///path` or `tcp://host:port`.
    pub host: String,
    /// TLS client certificates (tcp only); `None`: plain HTTP or a unix socket.
    pub tls: Option<TlsFiles>,
}

/// A `DOCKER_CERT_PATH`-style directory: `ca.pem` (the engine's CA), `cert.pem` and
/// `key.pem` (builder's client certificate and key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub dir: PathBuf,
}

impl TlsFiles {
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }
    pub fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }
    /// The first of the three files that is missing.
    fn missing(&self) -> Option<&'static str> {
        ["ca.pem", "cert.pem", "key.pem"]
            .into_iter()
            .find(|f| !self.dir.join(f).is_file())
    }
}

impl Endpoint {
    /// The endpoint of `DOCKER_HOST` (or the default socket), with TLS when
    /// `DOCKER_TLS_VERIFY` is set, as the docker CLI does.
    pub fn from_docker_host() -> Endpoint {
        let host = super::docker_host();
        let tls = (host.starts_with("tcp://") && tls_verify_env()).then(|| TlsFiles {
            dir: default_cert_path(),
        });
        Endpoint {
            name: DEFAULT_NAME.to_string(),
            host,
            tls,
        }
    }
}

/// `DOCKER_TLS_VERIFY` is set and not empty: the docker CLI and Docker's Go client treat any
/// non-empty value as on, `0` included.
fn tls_verify_env() -> bool {
    std::env::var("DOCKER_TLS_VERIFY").is_ok_and(|v| !v.is_empty())
}

/// `DOCKER_CERT_PATH`, else `~/.docker` (the docker CLI's default).
fn default_cert_path() -> PathBuf {
    if let Some(p) = std::env::var_os("DOCKER_CERT_PATH").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
        .join(".docker")
}

/// Checks one endpoint address; `Err` says what is wrong and how to write it. Returns the
/// address as builder uses it (a `tcp://` address without port gets Docker's default port:
/// 2376 with TLS, 2375 without).
pub(crate) fn check_host(host: &str, tls: bool) -> std::result::Result<String, String> {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix("ssh://") {
        return Err(format!(
            "`{host}`: builder does not connect over ssh. bollard (builder's Docker client) \
             only has ssh behind its `ssh` feature, which runs the system `ssh` client through \
             the `openssh` crate, and builder does not enable it. Forward the engine's socket \
             instead: `ssh -nNT -L /tmp/{name}.sock:/var/run/docker.sock {rest}` and use \
             `unix:///tmp/{name}.sock`, or expose the engine over TLS (`dockerd --tlsverify \
             -H tcp://0.0.0.0:2376`) and use `tcp://HOST:2376` with client certificates",
            name = rest
                .rsplit('@')
                .next()
                .unwrap_or("engine")
                .replace(|c: char| !c.is_ascii_alphanumeric(), "-")
        ));
    }
    if let Some(path) = host.strip_prefix("unix://") {
        if !path.starts_with('/') {
            return Err(format!(
                "`{host}`: a unix socket needs an absolute path, e.g. `unix:///var/run/docker.sock`"
            ));
        }
        return Ok(host.to_string());
    }
    if let Some(rest) = host.strip_prefix("tcp://") {
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') || rest.contains('@') {
            return Err(format!(
                "`{host}`: write a tcp endpoint as `tcp://HOST:PORT`, e.g. `tcp://10.0.0.2:2376`"
            ));
        }
        let (name, port) = match rest.rsplit_once(':') {
            // `[::1]:2376`, `host:2376`; a bare IPv6 address has colons but no brackets.
            Some((h, p)) if h.ends_with(']') || !h.contains(':') => (h, p),
            _ => (rest, ""),
        };
        if name.is_empty() || (name.contains(':') && !name.starts_with('[')) {
            return Err(format!(
                "`{host}`: write a tcp endpoint as `tcp://HOST:PORT` (an IPv6 address in \
                 brackets, `tcp://[::1]:2376`), e.g. `tcp://10.0.0.2:2376`"
            ));
        }
        if port.is_empty() {
            let default = if tls { 2376 } else { 2375 };
            return Ok(format!("tcp://{name}:{default}"));
        }
        return match port.parse::<u16>() {
            Ok(p) if p > 0 => Ok(format!("tcp://{name}:{p}")),
            _ => Err(format!("`{host}`: `{port}` is not a port number (1-65535)")),
        };
    }
    let scheme = host.split_once("://").map_or("", |(s, _)| s);
    Err(format!(
        "`{host}`: unsupported endpoint{}; use `unix:///path/to/docker.sock` or `tcp://HOST:PORT`",
        if scheme.is_empty() {
            String::new()
        } else {
            format!(" scheme `{scheme}://`")
        }
    ))
}

/// Checks an engine name: it appears in messages, reports and JSON.
fn check_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        return Err(format!(
            "engine name `{name}`: use 1 to 64 letters, digits, `_`, `.` or `-`"
        ));
    }
    Ok(())
}

/// The configured engines: `BUILDER_ENGINES` when set, else `<project>/engines.toml` when it
/// exists, else `None` (the one engine of `DOCKER_HOST`).
pub(crate) fn configured(project: &Path) -> Result<Option<Vec<Endpoint>>> {
    if let Some(v) = std::env::var_os(ENV_ENGINES).filter(|v| !v.is_empty()) {
        let v = v.to_string_lossy().into_owned();
        return parse_env(&v, tls_verify_env(), &default_cert_path())
            .map(Some)
            .map_err(crate::error::usage);
    }
    let file = project.join(FILE);
    if !file.is_file() {
        return Ok(None);
    }
    let text = diag::read_text(&file, "engine list")?;
    Ok(Some(parse_file(&file, &text, project)?))
}

/// Parses `BUILDER_ENGINES`: `[name=]endpoint` entries separated by commas. TLS follows
/// Docker's variables for every `tcp://` entry (`DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`).
pub(crate) fn parse_env(
    value: &str,
    tls_verify: bool,
    cert_path: &Path,
) -> std::result::Result<Vec<Endpoint>, String> {
    let mut out: Vec<Endpoint> = Vec::new();
    let help = format!(
        "set {ENV_ENGINES} to endpoints separated by commas, each optionally named, e.g. \
         `{ENV_ENGINES}=local=unix:///var/run/docker.sock,b2=tcp://10.0.0.2:2376`"
    );
    for (i, entry) in value.split(',').enumerate() {
        let entry = entry.trim();
        let n = i + 1;
        if entry.is_empty() {
            return Err(format!("{ENV_ENGINES}: entry {n} is empty; {help}"));
        }
        let (name, host) = match entry.split_once('=') {
            Some((name, host)) if !name.contains("://") => (name.trim().to_string(), host),
            _ => (format!("engine{n}"), entry),
        };
        check_name(&name).map_err(|e| format!("{ENV_ENGINES}: entry {n}: {e}; {help}"))?;
        let tls = host.trim().starts_with("tcp://") && tls_verify;
        let host = check_host(host, tls).map_err(|e| format!("{ENV_ENGINES}: entry {n}: {e}"))?;
        if out.iter().any(|o| o.name == name) {
            return Err(format!(
                "{ENV_ENGINES}: entry {n}: the name `{name}` is used twice; give each engine \
                 its own name (`name=endpoint`)"
            ));
        }
        if let Some(o) = out.iter().find(|o| o.host == host) {
            return Err(format!(
                "{ENV_ENGINES}: entry {n}: `{host}` is engine `{}` already; list each engine \
                 once (twice would count its CPUs twice)",
                o.name
            ));
        }
        let tls = tls.then(|| TlsFiles {
            dir: cert_path.to_path_buf(),
        });
        if let Some(f) = tls.as_ref().and_then(TlsFiles::missing) {
            return Err(format!(
                "{ENV_ENGINES}: entry {n} (`{host}`) uses TLS (DOCKER_TLS_VERIFY is set) but \
                 `{}` has no {f}; set DOCKER_CERT_PATH to the directory with ca.pem, cert.pem \
                 and key.pem",
                cert_path.display()
            ));
        }
        out.push(Endpoint { name, host, tls });
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    engine: Vec<Spanned<RawEngine>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEngine {
    name: Option<Spanned<String>>,
    host: Spanned<String>,
    tls_verify: Option<Spanned<bool>>,
    cert_path: Option<Spanned<String>>,
}

/// Parses engines.toml text (`file` names it in diagnostics; relative `cert_path`s are
/// relative to `project`). Every problem is reported, each at its line and column.
pub(crate) fn parse_file(
    file: &Path,
    text: &str,
    project: &Path,
) -> std::result::Result<Vec<Endpoint>, Diagnostics> {
    let raw: RawFile = diag::parse_toml(file, text)?;
    let mut out = Collector::new(file, text);
    if raw.engine.is_empty() {
        out.in_file(format!("{FILE} lists no engine")).help = Some(
            "add one `[[engine]]` table per engine with `host = \"unix:///var/run/docker.sock\"` \
             or `host = \"tcp://HOST:2376\"`, or delete the file to use DOCKER_HOST"
                .into(),
        );
    }
    let mut endpoints: Vec<Endpoint> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for (i, e) in raw.engine.iter().enumerate() {
        let span = e.span();
        let e = e.get_ref();
        let name = match &e.name {
            Some(n) => {
                if let Err(why) = check_name(n.get_ref()) {
                    out.err_help(n.span(), why, "e.g. `name = \"build-2\"`");
                }
                if names.contains(&n.get_ref().as_str()) {
                    out.err_help(
                        n.span(),
                        format!("the engine name `{}` is used twice", n.get_ref()),
                        "give each [[engine]] its own name",
                    );
                }
                names.push(n.get_ref());
                n.get_ref().clone()
            }
            None => {
                let generated = format!("engine{}", i + 1);
                if raw.engine.iter().any(|o| {
                    o.get_ref()
                        .name
                        .as_ref()
                        .is_some_and(|n| *n.get_ref() == generated)
                }) {
                    out.err_help(
                        span.clone(),
                        format!(
                            "this engine has no name, so it would be `{generated}`, which another \
                             [[engine]] is named"
                        ),
                        "give this [[engine]] a `name`",
                    );
                }
                generated
            }
        };
        let is_tcp = e.host.get_ref().trim().starts_with("tcp://");
        let verify = e.tls_verify.as_ref().map(|v| *v.get_ref());
        // Docker's rule: certificates mean TLS; `tls_verify` defaults to on when
        // `cert_path` is given and to DOCKER_TLS_VERIFY otherwise.
        let tls = is_tcp && verify.unwrap_or(e.cert_path.is_some() || tls_verify_env());
        if let (Some(false), Some(c)) = (verify, &e.cert_path) {
            out.err_help(
                c.span(),
                "`cert_path` with `tls_verify = false`: builder always verifies the engine's \
                 certificate against ca.pem (bollard's TLS client has no unverified mode)",
                "set `tls_verify = true`, or remove `cert_path` for plain tcp on a trusted network",
            );
        }
        if !is_tcp {
            if let Some(v) = e.tls_verify.as_ref().filter(|v| *v.get_ref()) {
                out.err_help(
                    v.span(),
                    "`tls_verify` only applies to `tcp://` engines",
                    "remove it for a unix socket",
                );
            }
        }
        let host = match check_host(e.host.get_ref(), tls) {
            Ok(h) => h,
            Err(why) => {
                out.err_help(
                    e.host.span(),
                    why,
                    "e.g. `host = \"unix:///var/run/docker.sock\"` or `host = \"tcp://10.0.0.2:2376\"`",
                );
                continue;
            }
        };
        let tls = if tls {
            let dir = match &e.cert_path {
                Some(c) if Path::new(c.get_ref()).is_absolute() => PathBuf::from(c.get_ref()),
                Some(c) => project.join(c.get_ref()),
                None => default_cert_path(),
            };
            let files = TlsFiles { dir };
            if let Some(f) = files.missing() {
                let at = e.cert_path.as_ref().map_or(span.clone(), |c| c.span());
                out.err_help(
                    at,
                    format!(
                        "engine `{name}` uses TLS but `{}` has no {f}",
                        files.dir.display()
                    ),
                    "point `cert_path` at a directory with ca.pem (the engine's CA), cert.pem \
                     and key.pem (builder's client certificate and key), as DOCKER_CERT_PATH",
                );
            }
            Some(files)
        } else {
            None
        };
        if let Some(o) = endpoints.iter().find(|o| o.host == host) {
            out.err_help(
                e.host.span(),
                format!("`{host}` is engine `{}` already", o.name),
                "list each engine once (twice would count its CPUs twice)",
            );
        }
        endpoints.push(Endpoint { name, host, tls });
    }
    out.finish(endpoints)
}

/// One engine of the pool, connected, with its capacity.
#[derive(Clone)]
pub struct PoolEngine {
    pub name: String,
    pub host: String,
    pub engine: Engine,
    pub cpus: u32,
    pub memory: u64,
    /// In Go's words (`amd64`, `arm64`), as images state theirs.
    pub arch: String,
}

/// An engine that did not answer when the pool was made.
#[derive(Debug, Clone, Serialize)]
pub struct LeftOut {
    pub name: String,
    pub host: String,
    pub reason: String,
}

/// The engines builds can use.
pub struct Pool {
    pub engines: Vec<PoolEngine>,
    pub left_out: Vec<LeftOut>,
    /// False: the one engine of `DOCKER_HOST` (no pool configured).
    pub configured: bool,
}

impl Pool {
    /// Connects every configured engine (at once, each bounded) and reads its capacity.
    /// Engines that do not answer are reported and left out; none left is an environment
    /// error naming each. Without a configuration: the `DOCKER_HOST` engine as
    /// [`super::connect`] makes it (same errors as before pools).
    pub async fn connect(project: &Path, reporter: &Reporter) -> Result<Pool> {
        let Some(endpoints) = configured(project)? else {
            let engine = super::connect().await?;
            let info = tokio::time::timeout(START_TIMEOUT, engine.info())
                .await
                .map_err(|_| {
                    crate::error::environment(format!(
                        "the Docker engine at `{}` did not answer /info within {} s",
                        engine.endpoint().host,
                        START_TIMEOUT.as_secs()
                    ))
                })??;
            return Ok(Pool {
                engines: vec![PoolEngine {
                    name: DEFAULT_NAME.to_string(),
                    host: engine.endpoint().host.clone(),
                    engine,
                    cpus: info.cpus,
                    memory: info.memory,
                    arch: info.arch,
                }],
                left_out: Vec::new(),
                configured: false,
            });
        };
        let tries = endpoints.iter().map(|ep| async move {
            let made = tokio::time::timeout(START_TIMEOUT * 2, async {
                let engine = super::connect_endpoint(ep).await?;
                let info = tokio::time::timeout(START_TIMEOUT, engine.info())
                    .await
                    .map_err(|_| anyhow::anyhow!("no answer to /info within 10 s"))??;
                anyhow::Ok((engine, info))
            })
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within 20 s")));
            (ep, made)
        });
        let mut pool = Pool {
            engines: Vec::new(),
            left_out: Vec::new(),
            configured: true,
        };
        for (ep, made) in futures_util::future::join_all(tries).await {
            match made {
                Ok((engine, info)) => {
                    reporter.verbose(format!(
                        "engine `{}` ({}): {} CPUs, {} MiB, {}",
                        ep.name,
                        ep.host,
                        info.cpus,
                        info.memory >> 20,
                        info.arch
                    ));
                    pool.engines.push(PoolEngine {
                        name: ep.name.clone(),
                        host: ep.host.clone(),
                        engine,
                        cpus: info.cpus.max(1),
                        memory: info.memory,
                        arch: info.arch,
                    });
                }
                Err(e) => {
                    let reason = format!("{e:#}");
                    reporter.warn(format!(
                        "engine `{}` ({}) left out: {reason}",
                        ep.name, ep.host
                    ));
                    pool.left_out.push(LeftOut {
                        name: ep.name.clone(),
                        host: ep.host.clone(),
                        reason,
                    });
                }
            }
        }
        if pool.engines.is_empty() {
            let mut msg = String::from("no Docker engine of the pool answered:");
            for l in &pool.left_out {
                msg.push_str(&format!("\n  {} ({}): {}", l.name, l.host, l.reason));
            }
            msg.push_str(&format!(
                "\nstart them, or fix {ENV_ENGINES} / {FILE} (without either, builder uses DOCKER_HOST)"
            ));
            return Err(crate::error::environment(msg));
        }
        Ok(pool)
    }
}

/// Docker's `/info` `Architecture` (the kernel's `uname -m`) in Go's words, which images
/// use: `x86_64` → `amd64`, `aarch64` → `arm64`, ...
pub(crate) fn go_arch(uname: &str) -> String {
    match uname {
        "x86_64" | "amd64" => "amd64",
        "aarch64" | "arm64" => "arm64",
        "armv7l" | "armv6l" | "arm" => "arm",
        "i386" | "i686" | "386" => "386",
        "ppc64le" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
    .to_string()
}

/// A Debian architecture in Go's words (`armhf` → `arm`, `i386` → `386`, `ppc64el` →
/// `ppc64le`); `None` for `all` and `any`, which any engine can build.
pub(crate) fn debian_to_go_arch(debian: &str) -> Option<String> {
    match debian {
        "all" | "any" | "" => None,
        "armhf" | "armel" => Some("arm".into()),
        "i386" => Some("386".into()),
        "ppc64el" => Some("ppc64le".into()),
        other => Some(go_arch(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> std::result::Result<Vec<Endpoint>, Diagnostics> {
        parse_file(Path::new("engines.toml"), text, Path::new("/proj"))
    }

    #[test]
    fn hosts_follow_dockers_conventions() {
        assert_eq!(
            check_host("unix:///var/run/docker.sock", false).unwrap(),
            "unix:///var/run/docker.sock"
        );
        assert_eq!(
            check_host("tcp://10.0.0.2", true).unwrap(),
            "tcp://10.0.0.2:2376"
        );
        assert_eq!(
            check_host("tcp://10.0.0.2", false).unwrap(),
            "tcp://10.0.0.2:2375"
        );
        assert_eq!(
            check_host("tcp://[::1]:3000/", false).unwrap(),
            "tcp://[::1]:3000"
        );
        let e = check_host("tcp://h:99999", false).unwrap_err();
        assert!(e.contains("`99999` is not a port number"), "{e}");
        let e = check_host("unix://run/docker.sock", false).unwrap_err();
        assert!(e.contains("absolute path"), "{e}");
        let e = check_host("http://h:2375", false).unwrap_err();
        assert!(e.contains("unsupported endpoint scheme `http://`"), "{e}");
    }

    #[test]
    fn broken_tcp_addresses_are_refused() {
        for bad in [
            "tcp://:2376",
            "tcp://h:2376:",
            "tcp://::1",
            "tcp://::1:2376",
        ] {
            let e = check_host(bad, false).unwrap_err();
            assert!(e.contains("tcp://HOST:PORT"), "{bad}: {e}");
        }
        assert_eq!(check_host("tcp://[::1]", true).unwrap(), "tcp://[::1]:2376");
    }

    #[test]
    fn one_engine_listed_twice_is_refused() {
        let certs = tempfile::tempdir().unwrap();
        let e = parse_env(
            "a=unix:///var/run/docker.sock,b=unix:///var/run/docker.sock",
            false,
            certs.path(),
        )
        .unwrap_err();
        assert!(e.contains("is engine `a` already"), "{e}");
        let d = file(
            "[[engine]]\nhost = \"tcp://10.0.0.2\"\n\n[[engine]]\nname = \"b\"\n\
             host = \"tcp://10.0.0.2:2375\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(d.contains("engines.toml:6:8"), "{d}");
        assert!(d.contains("is engine `engine1` already"), "{d}");
    }

    #[test]
    fn a_generated_name_may_not_clash_with_a_given_one() {
        let d = file(
            "[[engine]]\nhost = \"unix:///a.sock\"\n\n[[engine]]\nname = \"engine1\"\n\
             host = \"unix:///b.sock\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(d.contains("engines.toml:1:1"), "{d}");
        assert!(d.contains("would be `engine1`"), "{d}");
    }

    #[test]
    fn ssh_is_refused_with_a_way_round() {
        let e = check_host("ssh://ci@build-2.example", false).unwrap_err();
        assert!(e.contains("does not connect over ssh"), "{e}");
        assert!(e.contains("ssh -nNT -L /tmp/build-2-example.sock"), "{e}");
        assert!(e.contains("unix:///tmp/build-2-example.sock"), "{e}");
        assert!(e.contains("TLS"), "{e}");
    }

    #[test]
    fn the_env_var_lists_named_or_numbered_engines() {
        let certs = tempfile::tempdir().unwrap();
        let got = parse_env(
            "unix:///var/run/docker.sock, b2=tcp://127.0.0.1:2376",
            false,
            certs.path(),
        )
        .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].name, "engine1");
        assert_eq!(got[1].name, "b2");
        assert_eq!(got[1].host, "tcp://127.0.0.1:2376");
        assert_eq!(got[1].tls, None);
        // DOCKER_TLS_VERIFY: tcp entries use the cert directory, which must be complete.
        let e = parse_env("tcp://127.0.0.1:2376", true, certs.path()).unwrap_err();
        assert!(e.contains("has no ca.pem"), "{e}");
        assert!(e.contains("DOCKER_CERT_PATH"), "{e}");
        for f in ["ca.pem", "cert.pem", "key.pem"] {
            std::fs::write(certs.path().join(f), "x").unwrap();
        }
        let got = parse_env("tcp://127.0.0.1", true, certs.path()).unwrap();
        assert_eq!(got[0].host, "tcp://127.0.0.1:2376");
        assert_eq!(got[0].tls.as_ref().unwrap().dir, certs.path());
        for (bad, says) in [
            ("a=unix:///x,a=unix:///y", "the name `a` is used twice"),
            ("unix:///x,,unix:///y", "entry 2 is empty"),
            (
                "ssh://me@h",
                "entry 1: `ssh://me@h`: builder does not connect over ssh",
            ),
            ("b a=unix:///x", "engine name `b a`"),
        ] {
            let e = parse_env(bad, false, certs.path()).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
            assert!(e.starts_with(ENV_ENGINES), "{e}");
        }
    }

    #[test]
    fn engines_toml_reads_names_hosts_and_certificates() {
        let certs = tempfile::tempdir().unwrap();
        for f in ["ca.pem", "cert.pem", "key.pem"] {
            std::fs::write(certs.path().join(f), "x").unwrap();
        }
        let text = format!(
            "[[engine]]\nname = \"local\"\nhost = \"unix:///var/run/docker.sock\"\n\n\
             [[engine]]\nname = \"b2\"\nhost = \"tcp://127.0.0.1\"\ncert_path = \"{}\"\n",
            certs.path().display()
        );
        let got = file(&text).unwrap();
        assert_eq!(got[0].name, "local");
        assert_eq!(got[0].tls, None);
        assert_eq!(got[1].host, "tcp://127.0.0.1:2376");
        assert_eq!(got[1].tls.as_ref().unwrap().dir, certs.path());
    }

    #[test]
    fn engines_toml_problems_point_at_their_line_and_column() {
        let text = "[[engine]]\nname = \"a\"\nhost = \"ssh://me@h\"\n\n\
                    [[engine]]\nname = \"a\"\nhost = \"unix:///s\"\nhots = 1\n\n\
                    [[engine]]\nhost = \"tcp://h:2376\"\ncert_path = \"nowhere\"\n";
        let err = file(text).unwrap_err();
        let out = err.to_string();
        assert!(out.contains("engines.toml:8:1"), "{out}");
        assert!(out.contains("unknown key `hots`"), "{out}");
        assert!(out.contains("did you mean `host`?"), "{out}");
        // Unknown keys stop the typed pass: the rest is checked once they are fixed.
        let err = file(&text.replace("hots = 1\n", "\n")).unwrap_err();
        let at: Vec<_> = err.items().iter().map(|d| (d.line, d.col)).collect();
        assert_eq!(at, [(3, 8), (6, 8), (12, 13)], "{err}");
        let out = err.to_string();
        assert!(out.contains("engines.toml:3:8"), "{out}");
        assert!(out.contains("does not connect over ssh"), "{out}");
        assert!(out.contains("the engine name `a` is used twice"), "{out}");
        assert!(out.contains("`/proj/nowhere` has no ca.pem"), "{out}");
        let err = file("# nothing yet\n").unwrap_err();
        assert!(err.to_string().contains("lists no engine"), "{err}");
        let err = file("[[engine]]\nhost = \"tcp://h\"\ntls_verify = false\ncert_path = \"/c\"\n")
            .unwrap_err();
        assert!(err.to_string().contains("engines.toml:4:13"), "{err}");
        assert!(err.to_string().contains("always verifies"), "{err}");
    }

    #[test]
    fn architectures_meet_in_gos_words() {
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
        assert_eq!(debian_to_go_arch("amd64").as_deref(), Some("amd64"));
        assert_eq!(debian_to_go_arch("armhf").as_deref(), Some("arm"));
        assert_eq!(debian_to_go_arch("all"), None);
    }
}
