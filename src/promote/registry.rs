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
//! Plain HTTP only, no authentication: a registry on localhost or a private network.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;

use crate::repo::images::ImageEntry;

const TIMEOUT: Duration = Duration::from_secs(120);

/// A registry address: `host:port` (or `http://host:port`).
#[derive(Debug, Clone)]
pub struct Registry {
    host: String,
}

/// One pushed image.
#[derive(Debug, Clone, Serialize)]
pub struct Pushed {
    /// `<registry>/<env>/<name>:<tag>`
    pub reference: String,
    pub digest: String,
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

impl Registry {
    /// Parses `host:port`; `http://` is accepted, `https://` is not supported.
    pub fn parse(addr: &str) -> anyhow::Result<Self> {
        let a = addr.trim().trim_end_matches('/');
        if a.starts_with("https://") {
            return Err(crate::error::usage(format!(
                "registry `{addr}`: builder pushes over plain HTTP only (a registry on localhost \
                 or a private network); use `host:port`"
            )));
        }
        let host = a.strip_prefix("http://").unwrap_or(a);
        if host.is_empty() || host.contains('/') || host.contains(char::is_whitespace) {
            return Err(crate::error::usage(format!(
                "registry `{addr}` is not `host:port` (e.g. `127.0.0.1:5000`)"
            )));
        }
        Ok(Registry {
            host: host.to_string(),
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> anyhow::Result<Response> {
        let what = format!("{method} http://{}{path}", self.host);
        tokio::time::timeout(TIMEOUT, self.send_inner(method, path, headers, body))
            .await
            .map_err(|_| {
                crate::error::environment(format!("{what}: no answer in {}s", TIMEOUT.as_secs()))
            })?
            .with_context(|| format!("registry request {what} failed"))
    }

    async fn send_inner(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> anyhow::Result<Response> {
        let stream = TcpStream::connect(&self.host).await.map_err(|e| {
            crate::error::environment(format!(
                "could not connect to registry `{}`: {e}; is it running?",
                self.host
            ))
        })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake")?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header("host", &self.host)
            .header("user-agent", concat!("builder/", env!("CARGO_PKG_VERSION")));
        if method == Method::PUT || method == Method::POST {
            req = req.header("content-length", body.len().to_string());
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(body))
            .context("could not build the request")?;
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
    pub async fn push(
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
            let path = images_dir.join(crate::oci::spec::blob_path(digest));
            let data = tokio::fs::read(&path)
                .await
                .with_context(|| format!("could not read `{}`", path.display()))?;
            bytes += data.len() as u64;
            self.upload_blob(repo, digest, Bytes::from(data)).await?;
            uploaded += 1;
        }
        let mpath = images_dir.join(crate::oci::spec::blob_path(&image.digest));
        let manifest = tokio::fs::read(&mpath)
            .await
            .with_context(|| format!("could not read `{}`", mpath.display()))?;
        let got = format!("sha256:{}", hex::encode(Sha256::digest(&manifest)));
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

    async fn upload_blob(&self, repo: &str, digest: &str, data: Bytes) -> anyhow::Result<()> {
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
    ) -> anyhow::Result<String> {
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
        let body_digest = format!("sha256:{}", hex::encode(Sha256::digest(&get.body)));
        if header_digest != image.digest || body_digest != image.digest {
            return Err(crate::error::failed(format!(
                "registry `{}` serves {repo}:{tag} with digest {header_digest} (body sha256 \
                 {body_digest}), but {} was pushed",
                self.host, image.digest
            )));
        }
        Ok(header_digest)
    }
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .map(str::to_string)
}
