//! A small HTTP/1.1 server on 127.0.0.1 for the load generator's tests and benchmark (and
//! for anyone who needs a known target). It runs on its own thread with its own
//! single-threaded runtime, so it does not share the caller's scheduler, and records what
//! it saw: arrival times, requests per path, connections accepted.
//!
//! Routes: `/status/NNN` answers NNN; `/sleep/MS` answers 200 after MS milliseconds;
//! `/close` answers 200 and closes the connection; anything else answers 200 `ok`.
//! With [`ServerConfig::stall_at`], the n-th request starts a stall: every response is
//! held until `stall` after that request arrived (a server pausing once, e.g. for GC).
//! With [`ServerConfig::variants`], every answer carries a header whose value is picked per
//! request by weight, with that value's own extra latency and failures: two versions of a
//! service behind one load balancer that marks the variant, as in a canary run.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::http::{header, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    /// Keep every arrival time and path (tests); off for the benchmark.
    pub record: bool,
    /// The n-th request (1-based) starts a stall of `stall`.
    pub stall_at: Option<u64>,
    pub stall: Duration,
    /// Adds this response header to every answer ...
    pub variant_header: Option<String>,
    /// ... with one of these values, picked by weight (a deterministic smooth weighted
    /// round-robin over the requests in arrival order). Empty: no header.
    pub variants: Vec<Variant>,
}

/// One value of [`ServerConfig::variant_header`] and how the requests it marks behave.
#[derive(Debug, Clone, Default)]
pub struct Variant {
    pub value: String,
    pub weight: u32,
    /// Added before answering each request of this variant.
    pub delay: Duration,
    /// Every n-th request of this variant answers 500 (0: never).
    pub fail_every: u64,
}

#[derive(Default)]
struct State {
    config: ServerConfig,
    requests: AtomicU64,
    connections: AtomicU64,
    arrivals: Mutex<Vec<Instant>>,
    paths: Mutex<BTreeMap<String, u64>>,
    stall_until: Mutex<Option<Instant>>,
    /// Variant index per position of one round-robin cycle.
    cycle: Vec<usize>,
    /// Requests seen per variant.
    variant_requests: Vec<AtomicU64>,
}

pub struct TestServer {
    pub addr: SocketAddr,
    state: Arc<State>,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    /// Binds 127.0.0.1 on a free port and serves until dropped.
    pub fn start(config: ServerConfig) -> anyhow::Result<TestServer> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .context("could not bind a test server on 127.0.0.1")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        if let Some(name) = &config.variant_header {
            header::HeaderName::from_bytes(name.as_bytes()).with_context(|| {
                format!("test server variant header `{name}` is not a header name")
            })?;
        }
        if let Some(v) = config.variants.iter().find(|v| v.weight == 0) {
            anyhow::bail!(
                "test server variant `{}` has weight 0; use 1 or more",
                v.value
            );
        }
        let weights: Vec<u32> = config.variants.iter().map(|v| v.weight).collect();
        let state = Arc::new(State {
            cycle: super::target::wrr_cycle(&weights),
            variant_requests: config.variants.iter().map(|_| AtomicU64::new(0)).collect(),
            config,
            ..State::default()
        });
        let stop = CancellationToken::new();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("could not start the test server runtime")?;
        let (st, sp) = (state.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("load-test-server".into())
            .spawn(move || runtime.block_on(serve(listener, st, sp)))
            .context("could not start the test server thread")?;
        Ok(TestServer {
            addr,
            state,
            stop,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:port` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::Relaxed)
    }

    /// Arrival times, in order (only with `record`).
    pub fn arrivals(&self) -> Vec<Instant> {
        self.state
            .arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Requests per path (only with `record`).
    pub fn paths(&self) -> BTreeMap<String, u64> {
        self.state
            .paths
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(listener: std::net::TcpListener, state: Arc<State>, stop: CancellationToken) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
        };
        let _ = stream.set_nodelay(true);
        state.connections.fetch_add(1, Ordering::Relaxed);
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(req, state.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let now = Instant::now();
    let n = state.requests.fetch_add(1, Ordering::Relaxed) + 1;
    let path = req.uri().path();
    if state.config.record {
        state
            .arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(now);
        *state
            .paths
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(path.to_string())
            .or_default() += 1;
    }
    let hold = {
        let mut until = state.stall_until.lock().unwrap_or_else(|e| e.into_inner());
        if state.config.stall_at == Some(n) {
            *until = Some(now + state.config.stall);
        }
        until.filter(|u| *u > now)
    };
    if let Some(u) = hold {
        tokio::time::sleep_until(u.into()).await;
    }
    let mut status = StatusCode::OK;
    let variant = match state.cycle.len() {
        0 => None,
        len => {
            let i = state.cycle[((n - 1) % len as u64) as usize];
            let v = &state.config.variants[i];
            let k = state.variant_requests[i].fetch_add(1, Ordering::Relaxed) + 1;
            if v.fail_every > 0 && k % v.fail_every == 0 {
                status = StatusCode::INTERNAL_SERVER_ERROR;
            }
            if !v.delay.is_zero() {
                tokio::time::sleep(v.delay).await;
            }
            Some(v)
        }
    };
    let mut close = false;
    if let Some(code) = path.strip_prefix("/status/") {
        status = code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::BAD_REQUEST);
    } else if let Some(ms) = path.strip_prefix("/sleep/") {
        let ms = ms.parse::<u64>().unwrap_or(0).min(60_000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    } else if path == "/close" {
        close = true;
    }
    let mut resp = Response::new(Full::new(Bytes::from_static(b"ok\n")));
    *resp.status_mut() = status;
    if let (Some(v), Some(name)) = (variant, &state.config.variant_header) {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            header::HeaderValue::from_str(&v.value),
        ) {
            resp.headers_mut().insert(name, value);
        }
    }
    if close {
        resp.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    Ok(resp)
}
