//! Registries for the image promotion tests: Debian's `docker-registry` on 127.0.0.1 (plain
//! or TLS, with an optional login) and a Bearer-token front like the ones public registries
//! put before it.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Registry {
    child: std::process::Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn start_registry() -> Registry {
    start_registry_with(|_| String::new())
}

/// Starts Debian's docker-registry on 127.0.0.1; `extra(dir)` appends YAML (under `http:`
/// first, so it may add `  tls:`) and may write files into the registry's temp dir.
pub fn start_registry_with(extra: impl FnOnce(&Path) -> String) -> Registry {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("config.yml");
    let more = extra(dir.path());
    fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n{more}",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry (Debian package docker-registry) must be installed");
    let r = Registry {
        child,
        port,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the registry did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    r
}

/// A token-auth front for a real registry, as Docker Hub, GHCR or Harbor put in front of
/// distribution: `/v2/...` without a valid Bearer token answers 401 with a challenge
/// naming the realm and scope; `/token` checks the Basic login and hands out a token for
/// the scope asked; requests with the token are forwarded to the registry. Records the
/// scopes tokens were asked for.
pub struct TokenFront {
    pub port: u16,
    pub scopes: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _thread: std::thread::JoinHandle<()>,
}

pub fn start_token_front(registry_port: u16) -> TokenFront {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let scopes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = scopes.clone();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let path = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
                            let auth = req
                                .headers()
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_string();
                            let reply = |code: u16, body: String, challenge: Option<String>| {
                                let mut r = hyper::Response::builder().status(code);
                                if let Some(c) = challenge {
                                    r = r.header("www-authenticate", c);
                                }
                                Ok::<_, std::convert::Infallible>(r.body(Full::new(Bytes::from(body))).unwrap())
                            };
                            if let Some(q) = path.strip_prefix("/token?") {
                                // base64("ci:s3cret")
                                if auth != "Basic Y2k6czNjcmV0" {
                                    return reply(401, "bad login".into(), None);
                                }
                                let scope = q
                                    .split('&')
                                    .find_map(|kv| kv.strip_prefix("scope="))
                                    .unwrap_or("")
                                    .replace("%3A", ":")
                                    .replace("%2F", "/")
                                    .replace("%2C", ",");
                                seen.lock().unwrap().push(scope.clone());
                                return reply(200, format!("{{\"token\":\"tok {scope}\"}}"), None);
                            }
                            // /v2/<name>/(blobs|manifests)/...: the repository is the scope.
                            let repo = path
                                .trim_start_matches("/v2/")
                                .split("/blobs/")
                                .next()
                                .and_then(|r| r.split("/manifests/").next())
                                .unwrap_or("")
                                .to_string();
                            let scope = format!("repository:{repo}:pull,push");
                            if auth != format!("Bearer tok {scope}") {
                                return reply(
                                    401,
                                    "token required".into(),
                                    Some(format!(
                                        "Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"test\",scope=\"{scope}\""
                                    )),
                                );
                            }
                            // Forward to the registry.
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let stream = tokio::net::TcpStream::connect(("127.0.0.1", registry_port)).await.unwrap();
                            let (mut send, conn) = hyper::client::conn::http1::handshake(
                                hyper_util::rt::TokioIo::new(stream),
                            )
                            .await
                            .unwrap();
                            tokio::spawn(conn);
                            let mut fwd = hyper::Request::builder().method(parts.method).uri(&path);
                            for (k, v) in parts.headers.iter().filter(|(k, _)| *k != "authorization") {
                                fwd = fwd.header(k, v);
                            }
                            let resp = send.send_request(fwd.body(Full::new(body)).unwrap()).await.unwrap();
                            let (parts, body) = resp.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            Ok(hyper::Response::from_parts(parts, Full::new(body)))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    });
    TokenFront {
        port,
        scopes,
        _thread: thread,
    }
}
