//! The HTTP/1.1 client under the load generator: a keep-alive connection pool per target
//! address built directly on `hyper::client::conn::http1` over tokio `TcpStream`s, and one
//! request/response exchange with its outcome classified. A request that finds no idle
//! connection opens a new one at once (open model: never waits for a busy connection).
//! Knows nothing about rates, schedules or statistics.

use std::net::SocketAddr;
use std::sync::Mutex;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::http::{header, HeaderName, HeaderValue, Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::group::group_name;
use super::target::Resolved;

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A complete response (head and body) with this status code.
    Status(u16),
    Error(ErrorKind),
}

/// Failure classes reported in `error_counts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ErrorKind {
    ConnectRefused,
    ConnectTimeout,
    RequestTimeout,
    Reset,
    Other,
}

impl ErrorKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ErrorKind::ConnectRefused => "connect_refused",
            ErrorKind::ConnectTimeout => "connect_timeout",
            ErrorKind::RequestTimeout => "request_timeout",
            ErrorKind::Reset => "reset",
            ErrorKind::Other => "other",
        }
    }

    const ALL: [ErrorKind; 5] = [
        ErrorKind::ConnectRefused,
        ErrorKind::ConnectTimeout,
        ErrorKind::RequestTimeout,
        ErrorKind::Reset,
        ErrorKind::Other,
    ];

    /// A compact code for storage: 1 to 5 (0 stands for "no error").
    pub(crate) fn code(self) -> u8 {
        Self::ALL
            .iter()
            .position(|k| *k == self)
            .map_or(0, |i| i as u8 + 1)
    }

    pub(crate) fn from_code(code: u8) -> Option<ErrorKind> {
        Self::ALL.get(usize::from(code).checked_sub(1)?).copied()
    }

    /// The kind named `name` (see [`ErrorKind::as_str`]); unknown names are `Other`.
    pub(crate) fn from_name(name: &str) -> ErrorKind {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == name)
            .unwrap_or(ErrorKind::Other)
    }
}

/// Where an exchange was when it was interrupted; decides connect vs request timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Connecting,
    Requesting,
}

type Sender = SendRequest<Empty<Bytes>>;

/// Idle keep-alive connections to one address.
pub(super) struct Pool {
    addr: SocketAddr,
    idle: Mutex<Vec<Sender>>,
    max_idle: usize,
}

impl Pool {
    pub(super) fn new(addr: SocketAddr, max_idle: usize) -> Self {
        Pool {
            addr,
            idle: Mutex::new(Vec::new()),
            max_idle,
        }
    }

    fn take(&self) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        // Most recently used first: it is the most likely to still be open.
        while let Some(s) = idle.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    fn put(&self, s: Sender) {
        if s.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.max_idle {
            idle.push(s);
        }
    }

    /// Drops every idle connection (their driver tasks then end).
    pub(super) fn clear(&self) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    async fn connect(&self) -> Result<Sender, ErrorKind> {
        let stream = TcpStream::connect(self.addr)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::ConnectionRefused => ErrorKind::ConnectRefused,
                std::io::ErrorKind::TimedOut => ErrorKind::ConnectTimeout,
                std::io::ErrorKind::ConnectionReset => ErrorKind::Reset,
                _ => ErrorKind::Other,
            })?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| classify(&e))?;
        // The driver ends when the server closes or every sender is dropped; its error is
        // seen by the request in flight, so it is not reported twice here.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }
}

/// What an exchange has learnt so far; the caller reads it even when the exchange's future
/// was dropped on timeout.
#[derive(Debug)]
pub(super) struct Trace {
    pub phase: Phase,
    /// The value of the group header, once a response head carried it.
    pub group: Option<String>,
}

/// Performs one GET: takes an idle connection or opens one, sends, reads the whole body, and
/// returns the connection to the pool when it can be reused. `trace.phase` tells the caller,
/// if this future is dropped on timeout, whether it was still connecting; `trace.group` gets
/// the value of `group_header` as soon as the response head arrives (so a body that times out
/// still belongs to its group).
pub(super) async fn exchange(
    pool: &Pool,
    target: &Resolved,
    user_agent: &HeaderValue,
    group_header: Option<&HeaderName>,
    trace: &mut Trace,
) -> Outcome {
    let phase = &mut trace.phase;
    // A pooled connection may have been closed by the server in the meantime; hyper then says
    // the request was not sent (`is_canceled`), and it is safe to retry once on a new one.
    for attempt in 0..2 {
        *phase = Phase::Requesting;
        // Only the first attempt may use a pooled connection: a retry opens a new one, and
        // must not pop (and drop) another live keep-alive connection from the pool.
        let pooled = if attempt == 0 { pool.take() } else { None };
        let (mut sender, reused) = match pooled {
            Some(s) => (s, true),
            None => {
                *phase = Phase::Connecting;
                match pool.connect().await {
                    Ok(s) => (s, false),
                    Err(kind) => return Outcome::Error(kind),
                }
            }
        };
        *phase = Phase::Requesting;
        if sender.ready().await.is_err() {
            if reused {
                continue;
            }
            return Outcome::Error(ErrorKind::Reset);
        }
        let req = Request::builder()
            .method(Method::GET)
            .uri(target.path.clone())
            .header(header::HOST, target.host_header.clone())
            .header(header::USER_AGENT, user_agent.clone())
            .body(Empty::<Bytes>::new());
        let Ok(req) = req else {
            return Outcome::Error(ErrorKind::Other);
        };
        let resp = match sender.send_request(req).await {
            Ok(r) => r,
            Err(e) if reused && e.is_canceled() => continue,
            Err(e) => return Outcome::Error(classify(&e)),
        };
        let status = resp.status().as_u16();
        if let Some(v) = group_header.and_then(|h| resp.headers().get(h)) {
            trace.group = Some(group_name(v.as_bytes()));
        }
        let keep = !resp
            .headers()
            .get(header::CONNECTION)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        let mut body = resp.into_body();
        while let Some(frame) = body.frame().await {
            if let Err(e) = frame {
                return Outcome::Error(classify(&e));
            }
        }
        if keep {
            pool.put(sender);
        }
        return Outcome::Status(status);
    }
    Outcome::Error(ErrorKind::Reset)
}

/// Maps a hyper error to a failure class: the connection closing or being reset under a
/// request is `reset`, everything else is `other`.
fn classify(e: &hyper::Error) -> ErrorKind {
    if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
        return ErrorKind::Reset;
    }
    if e.is_timeout() {
        return ErrorKind::RequestTimeout;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof => ErrorKind::Reset,
                std::io::ErrorKind::TimedOut => ErrorKind::RequestTimeout,
                _ => ErrorKind::Other,
            };
        }
        source = s.source();
    }
    ErrorKind::Other
}
