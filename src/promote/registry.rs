//! Pushing an environment's images to a registry through the distribution HTTP API v2, the
//! way `crane copy` does: the same blobs and the same manifest bytes, so the digest a
//! registry reports is the digest the smoke report approved. Docker is not involved (it
//! would recompress layers and change the digest).
//!
//! Per image: `HEAD /v2/<repo>/blobs/<digest>` (skip what exists), else a monolithic upload
//! (`POST /v2/<repo>/blobs/uploads/` then `PUT <location>?digest=`), then
//! `PUT /v2/<repo>/manifests/<tag>` with the exact bytes and media type, then `GET` it back
//! and check `Docker-Content-Digest` and the body's sha256.
//!
//! Client: hyper's HTTP/1 connection API (already used by the load generator), one short
//! connection per request: a push is a handful of requests, so pooling buys nothing.
//!
//! Transport and login, as `docker` and `crane` do them:
//! - `https://host[:port]` uses TLS (rustls; the system's CA store from `/etc/ssl/certs`,
//!   plus `BUILDER_REGISTRY_CA`, a PEM file, for a private CA); `http://host:port` is plain
//!   HTTP; a bare `host:port` is TLS unless the host is loopback, which Docker also treats
//!   as an insecure registry.
//! - A `401` is answered from its `WWW-Authenticate` challenge: `Basic` sends
//!   `BUILDER_REGISTRY_USERNAME`/`BUILDER_REGISTRY_PASSWORD`; `Bearer` fetches a token from
//!   the challenge's realm (with those credentials when set, anonymously otherwise) for the
//!   challenge's scope, and the request is sent once more with it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

use crate::digest::Digest;
use crate::repo::images::ImageEntry;

const TIMEOUT: Duration = Duration::from_secs(120);

/// Environment variables read for registry access.
pub(crate) const ENV_USERNAME: &str = "BUILDER_REGISTRY_USERNAME";
pub(crate) const ENV_PASSWORD: &str = "BUILDER_REGISTRY_PASSWORD";
pub(crate) const ENV_CA: &str = "BUILDER_REGISTRY_CA";

/// How to reach and log in to a registry.
#[derive(Debug, Clone, Default)]
pub(crate) struct Access {
    pub username: Option<String>,
    pub password: Option<String>,
    /// A PEM file of extra CA certificates to trust.
    pub ca_file: Option<PathBuf>,
}

impl Access {
    /// From `BUILDER_REGISTRY_USERNAME`, `BUILDER_REGISTRY_PASSWORD`, `BUILDER_REGISTRY_CA`.
    pub(crate) fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Access {
            username: var(ENV_USERNAME),
            password: var(ENV_PASSWORD),
            ca_file: var(ENV_CA).map(PathBuf::from),
        }
    }
}

/// A registry address: `https://host[:port]`, `http://host:port` or `host:port`.
#[derive(Clone)]
pub(crate) struct Registry {
    /// `host[:port]` as given.
    host: String,
    tls: Option<tokio_rustls::TlsConnector>,
    basic: Option<String>,
    /// The `Authorization` value that worked last (a Basic login or a Bearer token).
    auth: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("host", &self.host)
            .field("tls", &self.tls.is_some())
            .field("login", &self.basic.is_some())
            .finish()
    }
}

/// One pushed image.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Pushed {
    /// `<registry>/<env>/<name>:<tag>`
    pub reference: String,
    pub digest: Digest,
    pub blobs_uploaded: usize,
    pub blobs_skipped: usize,
    pub bytes_uploaded: u64,
    pub seconds: f64,
}

struct Response {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// Whether `host[:port]` names this machine (Docker's default insecure registries).
fn is_loopback(host: &str) -> bool {
    let name = host_name(host);
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The host part of `host[:port]` (brackets of an IPv6 literal removed).
fn host_name(host: &str) -> &str {
    match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    }
}

/// `host[:port]` with the scheme's default port added, for connecting.
fn with_port(host: &str, tls: bool) -> String {
    let has_port = match host.strip_prefix('[') {
        Some(rest) => rest.contains("]:"),
        None => host.contains(':'),
    };
    if has_port {
        host.to_string()
    } else {
        format!("{host}:{}", if tls { 443 } else { 80 })
    }
}

pub(crate) fn tls_connector(access: &Access) -> anyhow::Result<tokio_rustls::TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable entries in the system store are skipped, as curl and Go do.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = &access.ca_file {
        use rustls_pki_types::pem::PemObject;
        let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| {
                crate::error::usage(format!(
                    "{ENV_CA}: could not read CA certificates from `{}`: {e}; give a PEM file",
                    path.display()
                ))
            })?;
        if certs.is_empty() {
            return Err(crate::error::usage(format!(
                "{ENV_CA}: `{}` holds no PEM certificate",
                path.display()
            )));
        }
        for c in certs {
            roots.add(c).map_err(|e| {
                crate::error::usage(format!(
                    "{ENV_CA}: a certificate in `{}` is not usable: {e}",
                    path.display()
                ))
            })?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("could not set up TLS")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

impl Registry {
    /// Parses the address with credentials and CA from the environment.
    pub(crate) fn parse(addr: &str) -> anyhow::Result<Self> {
        Self::with_access(addr, &Access::from_env())
    }

    /// Parses `https://host[:port]`, `http://host:port` or `host:port` (TLS unless loopback).
    pub(crate) fn with_access(addr: &str, access: &Access) -> anyhow::Result<Self> {
        let a = addr.trim().trim_end_matches('/');
        let (tls, host) = if let Some(h) = a.strip_prefix("https://") {
            (true, h)
        } else if let Some(h) = a.strip_prefix("http://") {
            (false, h)
        } else {
            (!is_loopback(a), a)
        };
        if host.is_empty() || host.contains('/') || host.contains(char::is_whitespace) {
            return Err(crate::error::usage(format!(
                "registry `{addr}` is not `host:port`, `http://host:port` or \
                 `https://host[:port]` (e.g. `127.0.0.1:5000`)"
            )));
        }
        let basic = match (&access.username, &access.password) {
            (Some(u), Some(p)) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )),
            (None, None) => None,
            _ => {
                return Err(crate::error::usage(format!(
                    "registry login needs both {ENV_USERNAME} and {ENV_PASSWORD}; one is not set"
                )))
            }
        };
        Ok(Registry {
            host: host.to_string(),
            tls: if tls {
                Some(tls_connector(access)?)
            } else {
                None
            },
            basic,
            auth: Arc::new(Mutex::new(None)),
        })
    }

    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Sends a request to the registry, logging in once when it answers 401.
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> anyhow::Result<Response> {
        let cached = self.auth.lock().ok().and_then(|a| a.clone());
        let r = self
            .exchange(&method, path, headers, body.clone(), cached.as_deref())
            .await?;
        if r.status != StatusCode::UNAUTHORIZED {
            return Ok(r);
        }
        let auth = self.login(&r).await?;
        if let Ok(mut a) = self.auth.lock() {
            *a = Some(auth.clone());
        }
        let r = self
            .exchange(&method, path, headers, body, Some(&auth))
            .await?;
        if r.status == StatusCode::UNAUTHORIZED || r.status == StatusCode::FORBIDDEN {
            return Err(crate::error::environment(format!(
                "registry `{}` refused the login for {method} {path} ({}); check {ENV_USERNAME} \
                 and {ENV_PASSWORD} and that the account may push there",
                self.host, r.status
            )));
        }
        Ok(r)
    }

    /// The `Authorization` value for the challenge in a 401 answer.
    async fn login(&self, r: &Response) -> anyhow::Result<String> {
        let challenge = header(&r.headers, "www-authenticate").unwrap_or_default();
        let (kind, params) = parse_challenge(&challenge);
        match kind.to_ascii_lowercase().as_str() {
            "basic" => self.basic.clone().ok_or_else(|| {
                crate::error::usage(format!(
                    "registry `{}` requires a login: set {ENV_USERNAME} and {ENV_PASSWORD}",
                    self.host
                ))
            }),
            "bearer" => self.token(&params).await,
            _ => Err(crate::error::environment(format!(
                "registry `{}` answered 401 with an authentication scheme builder does not \
                 speak: `{challenge}`",
                self.host
            ))),
        }
    }

    /// Fetches a Bearer token from the challenge's realm (the token protocol of the
    /// distribution spec): `GET <realm>?service=..&scope=..`, JSON `token` or `access_token`.
    async fn token(&self, params: &[(String, String)]) -> anyhow::Result<String> {
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let realm = get("realm").ok_or_else(|| {
            crate::error::environment(format!(
                "registry `{}` asked for a Bearer token without a realm",
                self.host
            ))
        })?;
        let (tls, rest) = if let Some(r) = realm.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = realm.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(crate::error::environment(format!(
                "registry `{}` gave a token realm that is not an http(s) URL: `{realm}`",
                self.host
            )));
        };
        let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let mut query = Vec::new();
        for k in ["service", "scope"] {
            if let Some(v) = get(k) {
                query.push(format!("{k}={}", url_escape(v)));
            }
        }
        let mut path = if path.is_empty() { "/" } else { path }.to_string();
        if !query.is_empty() {
            path.push(if path.contains('?') { '&' } else { '?' });
            path.push_str(&query.join("&"));
        }
        let tls = if tls {
            match &self.tls {
                Some(t) => Some(t.clone()),
                None => Some(tls_connector(&Access::from_env())?),
            }
        } else {
            None
        };
        let r = request(
            &tls,
            host,
            &Method::GET,
            &path,
            &[],
            Bytes::new(),
            self.basic.as_deref(),
        )
        .await
        .with_context(|| format!("could not get a registry token from `{realm}`"))?;
        if r.status == StatusCode::UNAUTHORIZED || r.status == StatusCode::FORBIDDEN {
            return Err(crate::error::environment(format!(
                "the token service `{realm}` of registry `{}` refused the login ({}); check \
                 {ENV_USERNAME} and {ENV_PASSWORD}",
                self.host, r.status
            )));
        }
        if r.status != StatusCode::OK {
            return Err(self.unexpected(&format!("GET token from {realm}"), &r));
        }
        let v: serde_json::Value = serde_json::from_slice(&r.body).map_err(|e| {
            crate::error::environment(format!(
                "the token service `{realm}` answered non-JSON: {e}"
            ))
        })?;
        let token = v["token"]
            .as_str()
            .or_else(|| v["access_token"].as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                crate::error::environment(format!(
                    "the token service `{realm}` answered without a token"
                ))
            })?;
        Ok(format!("Bearer {token}"))
    }

    async fn exchange(
        &self,
        method: &Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
        auth: Option<&str>,
    ) -> anyhow::Result<Response> {
        let what = format!("{method} {}://{}{path}", self.scheme(), self.host);
        request(&self.tls, &self.host, method, path, headers, body, auth)
            .await
            .with_context(|| format!("registry request {what} failed"))
    }

    fn unexpected(&self, what: &str, r: &Response) -> anyhow::Error {
        let text = String::from_utf8_lossy(&r.body);
        crate::error::environment(format!(
            "registry `{}`: {what} answered {}: {}",
            self.host,
            r.status,
            text.trim().chars().take(400).collect::<String>()
        ))
    }

    /// Pushes `image` (blobs under `images_dir`) as `<repo>:<tag>` and checks the registry
    /// serves the same manifest digest.
    pub(crate) async fn push(
        &self,
        images_dir: &Path,
        repo: &str,
        image: &ImageEntry,
    ) -> anyhow::Result<Pushed> {
        let start = Instant::now();
        let tag = image.tag();
        let mut uploaded = 0;
        let mut skipped = 0;
        let mut bytes = 0u64;
        // The manifest goes last: a registry accepts it only when its blobs are there.
        for (digest, _) in image.blobs.iter().filter(|(d, _)| *d != image.digest) {
            let head = self
                .send(
                    Method::HEAD,
                    &format!("/v2/{repo}/blobs/{digest}"),
                    &[],
                    Bytes::new(),
                )
                .await?;
            if head.status == StatusCode::OK {
                skipped += 1;
                continue;
            }
            let path = images_dir.join(digest.blob_path());
            let data = tokio::fs::read(&path)
                .await
                .with_context(|| format!("could not read `{}`", path.display()))?;
            bytes += data.len() as u64;
            self.upload_blob(repo, digest, Bytes::from(data)).await?;
            uploaded += 1;
        }
        let mpath = images_dir.join(image.digest.blob_path());
        let manifest = tokio::fs::read(&mpath)
            .await
            .with_context(|| format!("could not read `{}`", mpath.display()))?;
        let got = Digest::of(&manifest);
        if got != image.digest {
            return Err(crate::error::failed(format!(
                "manifest `{}` has sha256 {got}, but {} was approved: not pushing it",
                mpath.display(),
                image.digest
            )));
        }
        let put = self
            .send(
                Method::PUT,
                &format!("/v2/{repo}/manifests/{tag}"),
                &[("content-type", &image.media_type)],
                Bytes::from(manifest),
            )
            .await?;
        if put.status != StatusCode::CREATED {
            return Err(self.unexpected(&format!("PUT manifest {repo}:{tag}"), &put));
        }
        let digest = self.check_manifest(repo, &tag, image).await?;
        Ok(Pushed {
            reference: format!("{}/{repo}:{tag}", self.host),
            digest,
            blobs_uploaded: uploaded,
            blobs_skipped: skipped,
            bytes_uploaded: bytes,
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    async fn upload_blob(&self, repo: &str, digest: &Digest, data: Bytes) -> anyhow::Result<()> {
        let start = self
            .send(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/"),
                &[],
                Bytes::new(),
            )
            .await?;
        if start.status != StatusCode::ACCEPTED {
            return Err(self.unexpected(&format!("POST upload of {digest}"), &start));
        }
        let location = header(&start.headers, "location").ok_or_else(|| {
            crate::error::environment(format!(
                "registry `{}` started an upload without a Location header",
                self.host
            ))
        })?;
        // Location may be absolute (`http://host/v2/...`) or a path.
        let path = match location.split_once("://") {
            Some((_, rest)) => rest
                .find('/')
                .map(|i| rest[i..].to_string())
                .unwrap_or_default(),
            None => location.clone(),
        };
        let sep = if path.contains('?') { '&' } else { '?' };
        let put = self
            .send(
                Method::PUT,
                &format!("{path}{sep}digest={digest}"),
                &[("content-type", "application/octet-stream")],
                data,
            )
            .await?;
        if put.status != StatusCode::CREATED {
            return Err(self.unexpected(&format!("PUT blob {digest}"), &put));
        }
        Ok(())
    }

    /// GETs the manifest back: the header digest and the body's sha256 must be `image.digest`.
    async fn check_manifest(
        &self,
        repo: &str,
        tag: &str,
        image: &ImageEntry,
    ) -> anyhow::Result<Digest> {
        let get = self
            .send(
                Method::GET,
                &format!("/v2/{repo}/manifests/{tag}"),
                &[("accept", &image.media_type)],
                Bytes::new(),
            )
            .await?;
        if get.status != StatusCode::OK {
            return Err(self.unexpected(&format!("GET manifest {repo}:{tag}"), &get));
        }
        let header_digest = header(&get.headers, "docker-content-digest").unwrap_or_default();
        let body_digest = Digest::of(&get.body);
        if header_digest.parse::<Digest>().ok() != Some(image.digest) || body_digest != image.digest
        {
            return Err(crate::error::failed(format!(
                "registry `{}` serves {repo}:{tag} with digest {header_digest} (body sha256 \
                 {body_digest}), but {} was pushed",
                self.host, image.digest
            )));
        }
        Ok(image.digest)
    }
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .map(str::to_string)
}

/// One HTTP/1.1 request on a fresh connection (TLS when `tls` is set), with a deadline.
async fn request(
    tls: &Option<tokio_rustls::TlsConnector>,
    host: &str,
    method: &Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
    auth: Option<&str>,
) -> anyhow::Result<Response> {
    let mut req = Request::builder()
        .method(method.clone())
        .uri(path)
        .header("host", host)
        .header("user-agent", concat!("builder/", env!("CARGO_PKG_VERSION")));
    if method == Method::PUT || method == Method::POST {
        req = req.header("content-length", body.len().to_string());
    }
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(body))
        .context("could not build the request")?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let fut = async {
        let addr = with_port(host, tls.is_some());
        let tcp = TcpStream::connect(&addr).await.map_err(|e| {
            crate::error::environment(format!(
                "could not connect to registry `{host}` ({scheme}): {e}; is it running?"
            ))
        })?;
        match tls {
            None => round_trip(tcp, req).await,
            Some(connector) => {
                let name = rustls_pki_types::ServerName::try_from(host_name(host).to_string())
                    .map_err(|e| {
                        crate::error::usage(format!(
                            "registry host `{host}` is not a valid name: {e}"
                        ))
                    })?;
                let stream = connector.connect(name, tcp).await.map_err(|e| {
                    crate::error::environment(format!(
                        "TLS with registry `{host}` failed: {e}; for a registry with a private \
                         CA set {ENV_CA} to its PEM file, or use `http://{host}` for a plain \
                         HTTP registry"
                    ))
                })?;
                round_trip(stream, req).await
            }
        }
    };
    tokio::time::timeout(TIMEOUT, fut).await.map_err(|_| {
        crate::error::environment(format!(
            "{method} {scheme}://{host}{path}: no answer in {}s",
            TIMEOUT.as_secs()
        ))
    })?
}

async fn round_trip<IO>(io: IO, req: Request<Full<Bytes>>) -> anyhow::Result<Response>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .context("HTTP handshake")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Splits `Bearer realm="...",service="...",scope="..."` into the scheme and its parameters.
fn parse_challenge(h: &str) -> (String, Vec<(String, String)>) {
    let h = h.trim();
    let (kind, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect();
        }
        params.push((key.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    (kind.to_string(), params)
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
fn url_escape(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_like_distribution_sends_them() {
        let (k, p) = parse_challenge(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:dev/web:pull,push""#,
        );
        assert_eq!(k, "Bearer");
        assert_eq!(
            p,
            [
                (
                    "realm".to_string(),
                    "https://auth.example.com/token".to_string()
                ),
                ("service".to_string(), "registry.example.com".to_string()),
                (
                    "scope".to_string(),
                    "repository:dev/web:pull,push".to_string()
                ),
            ]
        );
        let (k, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(k, "Basic");
        assert_eq!(p[0].1, "Registry Realm");
        assert_eq!(
            url_escape("repository:dev/web:pull,push"),
            "repository%3Adev%2Fweb%3Apull%2Cpush"
        );
    }

    #[test]
    fn scheme_follows_dockers_rules() {
        let a = Access::default();
        for (addr, tls) in [
            ("127.0.0.1:5000", false),
            ("localhost:5000", false),
            ("[::1]:5000", false),
            ("registry.example.com", true),
            ("http://10.0.0.5:5000", false),
            ("https://127.0.0.1:5000/", true),
        ] {
            let r = Registry::with_access(addr, &a).unwrap();
            assert_eq!(r.tls.is_some(), tls, "{addr}");
        }
        assert_eq!(
            with_port("registry.example.com", true),
            "registry.example.com:443"
        );
        assert_eq!(with_port("[::1]:5000", false), "[::1]:5000");
        assert_eq!(host_name("[::1]:5000"), "::1");
        assert_eq!(host_name("r.example.com:5000"), "r.example.com");
        let half = Access {
            username: Some("u".into()),
            ..Access::default()
        };
        let e = Registry::with_access("127.0.0.1:5000", &half).unwrap_err();
        assert!(e.to_string().contains(ENV_PASSWORD), "{e}");
        let bad_ca = Access {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Access::default()
        };
        let e = Registry::with_access("https://r.example.com", &bad_ca).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }
}
