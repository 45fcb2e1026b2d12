//! Downloads from a Debian archive: `http://`, `https://` (rustls, the system's roots) and
//! `file:` URIs. Bodies stream to a temp file beside the destination while their sha256 is
//! computed; a file is renamed into place only when its size and sha256 are the expected
//! ones, so the cache never holds a partial or unverified file. Transient network errors are
//! retried; every wait is bounded.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long to wait to connect, and for each piece of a body.
const IDLE: Duration = Duration::from_secs(60);
/// Attempts per file (network errors and 5xx answers only).
const ATTEMPTS: u32 = 3;
const MAX_REDIRECTS: u32 = 5;

/// What a download must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expect {
    pub size: u64,
    /// sha256 hex.
    pub sha256: String,
}

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    /// 404/410: the archive does not have it (any more).
    #[error("{url}: not found (HTTP {status})")]
    NotFound { url: String, status: u16 },
    /// Bytes arrived but are not what the verified index promised.
    #[error("{url}: {reason}")]
    Mismatch { url: String, reason: String },
    #[error("{url}: {reason}")]
    Network { url: String, reason: String },
    #[error("{0}")]
    Local(String),
}

impl FetchError {
    /// The error with the exit-code class builder uses (1 for tampering, 3 for the network).
    pub(crate) fn into_anyhow(self) -> anyhow::Error {
        match self {
            FetchError::Mismatch { .. } | FetchError::NotFound { .. } => {
                crate::error::failed(self.to_string())
            }
            FetchError::Network { .. } | FetchError::Local(_) => {
                crate::error::environment(self.to_string())
            }
        }
    }
}

/// An HTTP(S)/file client for archive downloads.
#[derive(Clone)]
pub(crate) struct Fetcher {
    tls: tokio_rustls::TlsConnector,
    /// Addresses by `host:port`, looked up once per process: some resolvers answer one of
    /// glibc's parallel A/AAAA queries only after a 5 s timeout, and a set of 75 downloads
    /// must not pay that 75 times.
    dns: DnsCache,
}

/// Addresses by `host:port`, shared by every fetcher of the process.
type DnsCache =
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<std::net::SocketAddr>>>>;

struct Url<'a> {
    tls: bool,
    host: &'a str,
    path: &'a str,
}

fn split_url(url: &str) -> Option<Url<'_>> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        (false, url.strip_prefix("http://")?)
    };
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    (!host.is_empty()).then_some(Url { tls, host, path })
}

/// The local path of a `file:` URL (`file:/srv/x`, `file:///srv/x`).
pub(crate) fn file_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("file:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    Some(PathBuf::from(if rest.starts_with('/') {
        rest.to_string()
    } else {
        format!("/{rest}")
    }))
}

impl Fetcher {
    pub(crate) fn new() -> anyhow::Result<Fetcher> {
        let access = crate::promote::registry::Access {
            username: None,
            password: None,
            ca_file: None,
        };
        static DNS: std::sync::OnceLock<DnsCache> = std::sync::OnceLock::new();
        Ok(Fetcher {
            tls: crate::promote::registry::tls_connector(&access)?,
            dns: DNS.get_or_init(Default::default).clone(),
        })
    }

    /// GETs a small file (an InRelease) into memory, at most `limit` bytes.
    pub(crate) async fn get_bytes(&self, url: &str, limit: u64) -> Result<Vec<u8>, FetchError> {
        let mut sink = Vec::new();
        self.get_into(url, &mut sink, limit).await?;
        Ok(sink)
    }

    /// Downloads `url` to `dest`, checking size and sha256; `dest` appears only when both
    /// match. Returns the bytes written.
    pub(crate) async fn get_verified(
        &self,
        url: &str,
        dest: &Path,
        expect: &Expect,
    ) -> Result<u64, FetchError> {
        let dir = dest
            .parent()
            .ok_or_else(|| FetchError::Local(format!("`{}` has no parent", dest.display())))?;
        std::fs::create_dir_all(dir)
            .map_err(|e| FetchError::Local(format!("could not create `{}`: {e}", dir.display())))?;
        let mut last = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(attempt))).await;
            }
            let tmp = tempfile::Builder::new()
                .prefix(&format!(".part-{}-", std::process::id()))
                .tempfile_in(dir)
                .map_err(|e| {
                    FetchError::Local(format!(
                        "could not create a file in `{}`: {e}",
                        dir.display()
                    ))
                })?;
            let mut w = crate::digest::HashWriter::new(std::io::BufWriter::with_capacity(
                1 << 20,
                tmp.as_file(),
            ));
            match self.get_into(url, &mut w, expect.size).await {
                Ok(()) => {}
                Err(e @ FetchError::Network { .. }) => {
                    last = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            }
            let (mut file, got, n) = w.finish();
            let got = got.hex();
            file.flush().map_err(|e| local_write(dest, e))?;
            drop(file);
            if n != expect.size {
                return Err(FetchError::Mismatch {
                    url: url.to_string(),
                    reason: format!(
                        "{n} bytes arrived, {} expected (builder.lock, or the verified index it \
                         was resolved from); the mirror or a proxy changed the file, or the lock \
                         was edited",
                        expect.size
                    ),
                });
            }
            if got != expect.sha256 {
                return Err(FetchError::Mismatch {
                    url: url.to_string(),
                    reason: format!(
                        "its sha256 is {got}, {} expected (builder.lock, or the verified index \
                         it was resolved from); refusing it: the mirror or a proxy changed the \
                         file, or the lock was edited (`builder lock --update NAME` takes the \
                         index's sha256 again)",
                        expect.sha256
                    ),
                });
            }
            crate::durable::persist(tmp, dest).map_err(|e| FetchError::Local(format!("{e:#}")))?;
            return Ok(n);
        }
        Err(last.unwrap_or_else(|| FetchError::Network {
            url: url.to_string(),
            reason: "no attempt made".into(),
        }))
    }

    /// Writes the body of `url` into `w`, refusing more than `limit` bytes.
    async fn get_into(
        &self,
        url: &str,
        w: &mut (dyn Write + Send),
        limit: u64,
    ) -> Result<(), FetchError> {
        if let Some(path) = file_path(url) {
            let mut f = std::fs::File::open(&path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => FetchError::NotFound {
                    url: url.to_string(),
                    status: 404,
                },
                _ => FetchError::Local(format!("could not read `{}`: {e}", path.display())),
            })?;
            let mut limited = std::io::Read::take(&mut f, limit + 1);
            let n = std::io::copy(&mut limited, w).map_err(|e| {
                FetchError::Local(format!("could not copy `{}`: {e}", path.display()))
            })?;
            if n > limit {
                return Err(too_big(url, limit));
            }
            return Ok(());
        }
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            match self.get_once(&url, w, limit).await? {
                None => return Ok(()),
                Some(next) => url = next,
            }
        }
        Err(FetchError::Network {
            url,
            reason: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }

    /// A TCP connection to `host:port`, trying each address the (cached) lookup gave.
    async fn connect(&self, addr: &str) -> Result<TcpStream, String> {
        let cached = self
            .dns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(addr)
            .cloned();
        // One lookup at a time: parallel downloads wait for the first answer instead of
        // each asking (and each waiting out a slow resolver).
        static LOOKUP: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _one = match cached {
            Some(_) => None,
            None => Some(LOOKUP.lock().await),
        };
        let cached = cached.or_else(|| {
            self.dns
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(addr)
                .cloned()
        });
        let addrs = match cached {
            Some(a) => a,
            None => {
                let found: Vec<std::net::SocketAddr> =
                    tokio::time::timeout(IDLE, tokio::net::lookup_host(addr))
                        .await
                        .map_err(|_| format!("looking up `{addr}` took over {}s", IDLE.as_secs()))?
                        .map_err(|e| format!("could not look up `{addr}`: {e}"))?
                        .collect();
                self.dns
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(addr.to_string(), found.clone());
                found
            }
        };
        let mut last = format!("`{addr}` has no address");
        for a in addrs {
            match tokio::time::timeout(IDLE, TcpStream::connect(a)).await {
                Ok(Ok(tcp)) => return Ok(tcp),
                Ok(Err(e)) => last = format!("could not connect to `{addr}` ({a}): {e}"),
                Err(_) => {
                    last = format!("could not connect to `{addr}` ({a}) in {}s", IDLE.as_secs())
                }
            }
        }
        Err(last)
    }

    /// One GET; `Some(location)` for a redirect.
    async fn get_once(
        &self,
        url: &str,
        w: &mut (dyn Write + Send),
        limit: u64,
    ) -> Result<Option<String>, FetchError> {
        let net = |reason: String| FetchError::Network {
            url: url.to_string(),
            reason,
        };
        let u = split_url(url).ok_or_else(|| {
            FetchError::Local(format!("`{url}` is not an http://, https:// or file: URL"))
        })?;
        let addr = if u.host.contains(':') && !u.host.ends_with(']') {
            u.host.to_string()
        } else {
            format!("{}:{}", u.host, if u.tls { 443 } else { 80 })
        };
        let tcp = self.connect(&addr).await.map_err(net)?;
        let req = Request::get(u.path)
            .header("host", u.host)
            .header("user-agent", concat!("builder/", env!("CARGO_PKG_VERSION")))
            .body(Empty::<Bytes>::new())
            .map_err(|e| net(format!("bad request: {e}")))?;
        let resp = if u.tls {
            let name = u
                .host
                .rsplit_once(':')
                .map_or(u.host, |(h, _)| h)
                .to_string();
            let name = rustls_pki_types::ServerName::try_from(name)
                .map_err(|e| net(format!("bad host name: {e}")))?;
            let tls = tokio::time::timeout(IDLE, self.tls.connect(name, tcp))
                .await
                .map_err(|_| net("TLS handshake timed out".into()))?
                .map_err(|e| net(format!("TLS: {e}")))?;
            send(TokioIo::new(tls), req).await
        } else {
            send(TokioIo::new(tcp), req).await
        }
        .map_err(net)?;
        let status = resp.status().as_u16();
        if (300..400).contains(&status) {
            let loc = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| net(format!("HTTP {status} without a Location")))?;
            let next = if loc.contains("://") {
                if u.tls && !loc.starts_with("https://") {
                    return Err(net(format!(
                        "refusing the redirect from https to `{loc}` (a downgrade)"
                    )));
                }
                loc.to_string()
            } else if loc.starts_with('/') {
                format!("{}://{}{loc}", if u.tls { "https" } else { "http" }, u.host)
            } else {
                return Err(net(format!("unsupported redirect to `{loc}`")));
            };
            return Ok(Some(next));
        }
        if status == 404 || status == 410 {
            return Err(FetchError::NotFound {
                url: url.to_string(),
                status,
            });
        }
        if status != 200 {
            return Err(net(format!("HTTP {status}")));
        }
        let mut body = resp.into_body();
        let mut n = 0u64;
        loop {
            let frame = tokio::time::timeout(IDLE, body.frame())
                .await
                .map_err(|_| net(format!("no data for {}s", IDLE.as_secs())))?;
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| net(format!("the body broke off: {e}")))?;
            if let Ok(data) = frame.into_data() {
                n += data.len() as u64;
                if n > limit {
                    return Err(too_big(url, limit));
                }
                w.write_all(&data)
                    .map_err(|e| FetchError::Local(format!("could not write a download: {e}")))?;
            }
        }
        Ok(None)
    }
}

async fn send<IO>(
    io: TokioIo<IO>,
    req: Request<Empty<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = tokio::time::timeout(IDLE, hyper::client::conn::http1::handshake(io))
        .await
        .map_err(|_| "HTTP handshake timed out".to_string())?
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    tokio::time::timeout(IDLE, sender.send_request(req))
        .await
        .map_err(|_| format!("no answer in {}s", IDLE.as_secs()))?
        .map_err(|e| format!("request failed: {e}"))
}

fn too_big(url: &str, limit: u64) -> FetchError {
    FetchError::Mismatch {
        url: url.to_string(),
        reason: format!("it is larger than the {limit} bytes expected; refusing it"),
    }
}

fn local_write(dest: &Path, e: std::io::Error) -> FetchError {
    FetchError::Local(format!("could not write `{}`: {e}", dest.display()))
}

/// Runs `fut` to completion on a runtime of its own, on a thread of its own: usable from
/// blocking code whether or not a runtime is running on the calling thread.
pub(crate) fn block_on<T: Send>(
    fut: impl std::future::Future<Output = T> + Send,
) -> anyhow::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("could not start a runtime for downloads")?;
            Ok(rt.block_on(fut))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the download thread panicked"))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = split_url("http://mirror.example/debian/dists/x").unwrap();
        assert_eq!(
            (u.tls, u.host, u.path),
            (false, "mirror.example", "/debian/dists/x")
        );
        let u = split_url("https://127.0.0.1:8443").unwrap();
        assert_eq!((u.tls, u.host, u.path), (true, "127.0.0.1:8443", "/"));
        assert!(split_url("ftp://x/").is_none());
        assert_eq!(file_path("file:///srv/r"), Some(PathBuf::from("/srv/r")));
        assert_eq!(file_path("file:/srv/r"), Some(PathBuf::from("/srv/r")));
    }

    #[test]
    fn file_urls_are_verified_like_downloads() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a.deb");
        std::fs::write(&src, b"hello").unwrap();
        let url = format!("file://{}", src.display());
        let good = Expect {
            size: 5,
            sha256: crate::digest::sha256_hex(b"hello"),
        };
        let f = Fetcher::new().unwrap();
        let dest = dir.path().join("cache/x.deb");
        let n = block_on(f.get_verified(&url, &dest, &good))
            .unwrap()
            .unwrap();
        assert_eq!(n, 5);
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello");
        let bad = Expect {
            size: 5,
            sha256: crate::digest::sha256_hex(b"hellO"),
        };
        let dest2 = dir.path().join("cache/y.deb");
        let err = block_on(f.get_verified(&url, &dest2, &bad))
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, FetchError::Mismatch { .. }), "{err}");
        assert!(!dest2.exists());
        let left: Vec<_> = std::fs::read_dir(dir.path().join("cache"))
            .unwrap()
            .collect();
        assert_eq!(left.len(), 1, "no temp file is left");
        let err = block_on(f.get_verified(&url, &dest2, &Expect { size: 4, ..good }))
            .unwrap()
            .unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
    }
}
