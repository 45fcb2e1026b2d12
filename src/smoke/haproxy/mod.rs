//! The HAProxy side of a smoke run: the generated `haproxy.cfg` (one backend section per
//! service, each server health-checked with `GET <health>`, addressed by container name through
//! Docker's embedded DNS so restarts with new addresses are followed) and the stats page
//! (`/stats;csv` on a second port) that tells which servers are up.
//!
//! Every value that comes from the stack (paths, names, keywords) is written as one
//! double-quoted word by [`quoted`], even though the stack's validation already refused
//! whatever could break it: the config's structure must never depend on that validation.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::deploy::Variant;
use super::stack::Stack;

pub(crate) mod runtime;

/// Port HAProxy listens on for traffic inside its container.
pub(crate) const TRAFFIC_PORT: u16 = 8080;
/// Port of the stats page inside the container.
pub(crate) const STATS_PORT: u16 = 8404;
pub(crate) const STATS_PATH: &str = "/stats";

/// One server in the config: a container of a service.
#[derive(Debug, Clone)]
pub(crate) struct ServerAddr {
    pub service: String,
    /// HAProxy server name, e.g. `frontend-3`.
    pub server: String,
    /// DNS name on the smoke network (the container name).
    pub host: String,
    pub port: u16,
    pub variant: Variant,
}

/// `s` as one HAProxy config word: double-quoted ("weak quoting", configuration manual §2.2
/// "Quoting and escaping"), with `\`, `"` and `$` (inside double quotes `$NAME` is an
/// environment variable) escaped by a backslash, `#` too although quotes already keep it from
/// starting a comment, and control characters written `\xNN`, so no value can end the word or
/// the line. HAProxy reads the word back as exactly `s` (tested against the real binary).
pub(crate) fn quoted(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '\\' | '"' | '$' | '#' => {
                q.push('\\');
                q.push(c);
            }
            c if c.is_ascii_control() => {
                let _ = write!(q, "\\x{:02x}", c as u32);
            }
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// `s` inside a `#` comment: control characters escaped, so a newline cannot end it.
fn comment(s: &str) -> String {
    s.chars().flat_map(char::escape_debug).collect()
}

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

/// HAProxy's name for the backend of `service`.
pub(crate) fn backend_name(service: &str) -> String {
    format!("be_{service}")
}

/// Everything before the backends of a single-level config: globals, resolvers, defaults,
/// the servers' defaults and the routes.
fn single_level_head(stack: &Stack) -> String {
    let mut c = head(stack, None);
    c.push_str(&server_defaults(stack));
    c.push('\n');
    frontend(&mut c, stack);
    c
}

/// The whole `haproxy.cfg` for a stack and its servers: one backend per service.
pub(crate) fn config(stack: &Stack, servers: &[ServerAddr]) -> String {
    let mut c = single_level_head(stack);
    for svc in &stack.services {
        let _ = writeln!(c, "backend {}", quoted(&backend_name(&svc.name)));
        service_servers(
            &mut c,
            stack,
            svc,
            servers.iter().filter(|s| s.service == svc.name),
        );
        c.push('\n');
    }
    stats(&mut c);
    c
}

/// The `haproxy.cfg` of a canary run: two levels per service, so the split between the
/// variants is exact and adjustable at runtime, and neither variant's failures are retried
/// on the other.
///
/// - `backend be_<svc>`: `balance random(1)` (one weighted draw) over two servers, `candidate` (weight
///   `candidate_weight`) and `baseline` (`100 - candidate_weight`), without health checks,
///   retries or redispatch (configuration manual §4.2 `retries`, `option redispatch`,
///   `retry-on`; §5.2 `weight`), each an abstract UNIX socket (`abns@`, §11) of
///   - `listen be_<svc>.<variant>`: today's backend over that variant's servers only (health
///     checks, retries and `retry-on` among them), stamping every response, HAProxy's own
///     errors included, with `X-Builder-Variant: <variant>` (`http-after-response
///     set-header`, §4.2).
///
/// The runtime API (`stats socket ... level admin`, management guide §9.3) listens on
/// [`API_PORT`]: `set weight` and `set server ... state` move traffic during the switch.
pub(crate) fn canary_config(
    stack: &Stack,
    servers: &[ServerAddr],
    candidate_weight: u32,
) -> String {
    canary_config_of(stack, Servers::Listed(servers), candidate_weight)
}

/// Where a canary config's inner sections find their servers.
pub(crate) enum Servers<'a> {
    /// Containers known in advance (the containers target).
    Listed(&'a [ServerAddr]),
    /// Swarm: a `server-template` per variant and service, of `replicas` slots named as
    /// [`Variant::server`] names them, filled from the A records of `dns(variant, service)`.
    Templates(&'a dyn Fn(Variant, &str) -> String),
}

/// [`canary_config`] with the servers of either target.
pub(crate) fn canary_config_of(
    stack: &Stack,
    servers: Servers<'_>,
    candidate_weight: u32,
) -> String {
    let mut c = head(stack, Some(API_PORT));
    c.push('\n');
    frontend(&mut c, stack);
    let candidate_weight = candidate_weight.min(100);
    for svc in &stack.services {
        let be = backend_name(&svc.name);
        let _ = writeln!(c, "backend {}", quoted(&be));
        // `random(1)`: one weighted draw per request. Not `roundrobin`: its fixed sequence
        // beats against the load generator's fixed sequence of paths (smooth weighted
        // round-robin), so one variant got more pages and the other more static files,
        // and the comparison measured the mix. Not the default two draws either: they
        // pick the less loaded server, moving traffic away from a slower candidate.
        c.push_str("    balance random(1)\n    retries 0\n    no option redispatch\n");
        c.push_str("    retry-on none\n");
        // A request slower than the load generator waits (`load.timeout`) is answered by
        // HAProxy first, with a 504 stamped with the variant the draw chose (`srv_name`,
        // configuration manual §7.3.3), so it counts against that variant instead of
        // being a client-side timeout no variant can be blamed for.
        let _ = writeln!(
            c,
            "    timeout server {}",
            ms(answer_within(stack.load.timeout).min(stack.load_balancer.timeout_server))
        );
        let _ = writeln!(
            c,
            "    http-after-response set-header {VARIANT_HEADER} %[srv_name] \
             unless {{ res.hdr({VARIANT_HEADER}) -m found }}"
        );
        for v in Variant::ALL {
            let weight = match v {
                Variant::Candidate => candidate_weight,
                Variant::Baseline => 100 - candidate_weight,
            };
            let _ = writeln!(
                c,
                "    server {} {} weight {weight}",
                v.as_str(),
                quoted(&format!("abns@{}", inner_socket(&be, v)))
            );
        }
        c.push('\n');
        for v in Variant::ALL {
            let _ = writeln!(c, "listen {}", quoted(&inner_name(&be, v)));
            let _ = writeln!(
                c,
                "    bind {}",
                quoted(&format!("abns@{}", inner_socket(&be, v)))
            );
            let _ = writeln!(
                c,
                "    http-after-response set-header {VARIANT_HEADER} {}",
                v.as_str()
            );
            c.push_str(&server_defaults(stack));
            match &servers {
                Servers::Listed(servers) => {
                    let mine = servers
                        .iter()
                        .filter(|s| s.service == svc.name && s.variant == v);
                    service_servers(&mut c, stack, svc, mine);
                }
                Servers::Templates(dns) => {
                    service_checks(&mut c, stack, svc);
                    server_template(&mut c, svc, v, &dns(v, &svc.name));
                }
            }
            c.push('\n');
        }
    }
    stats(&mut c);
    c
}

/// How long the outer backend of a canary run waits for an answer: a tenth (at least
/// 100 ms) less than the load generator's `timeout`, so HAProxy's 504 reaches it in time;
/// half of `timeout` when that leaves nothing.
fn answer_within(timeout: Duration) -> Duration {
    let margin = (timeout / 10).max(Duration::from_millis(100));
    match timeout.saturating_sub(margin) {
        d if d.is_zero() => timeout / 2,
        d => d,
    }
}

/// The response header each inner section of a canary run sets to its variant.
pub(crate) const VARIANT_HEADER: &str = "X-Builder-Variant";

/// Port of the runtime API (`stats socket`) inside the container, in canary runs.
pub(crate) const API_PORT: u16 = 9999;

/// The inner section of variant `v` of backend `be`, e.g. `be_frontend.baseline`.
pub(crate) fn inner_name(be: &str, v: Variant) -> String {
    format!("{be}.{}", v.as_str())
}

/// The abstract socket the inner section listens on (private to HAProxy's container).
fn inner_socket(be: &str, v: Variant) -> String {
    format!("builder.{}", inner_name(be, v))
}

/// `global` and `defaults` (without `default-server`); `api`: the runtime API's port.
fn head(stack: &Stack, api: Option<u16>) -> String {
    let lb = &stack.load_balancer;
    let mut c = String::new();
    let _ = writeln!(
        c,
        "# generated by `builder smoke` from {}",
        comment(&stack.file.display().to_string())
    );
    c.push_str("global\n    maxconn 4096\n    log stdout format raw local0 notice\n");
    if let Some(port) = api {
        let _ = writeln!(c, "    stats socket ipv4@0.0.0.0:{port} level admin");
    }
    c.push('\n');
    c.push_str("# Docker's embedded DNS: containers are found by name, even after a restart\n");
    c.push_str("# gives them a new address.\n");
    c.push_str("resolvers docker\n    nameserver dns 127.0.0.11:53\n");
    c.push_str("    resolve_retries 3\n    timeout resolve 1s\n    timeout retry 1s\n");
    c.push_str("    hold valid 1s\n    hold other 1s\n    hold refused 1s\n    hold nx 1s\n");
    c.push_str("    hold timeout 1s\n    hold obsolete 1s\n    accepted_payload_size 8192\n\n");
    c.push_str("defaults\n    mode http\n    log global\n    option dontlognull\n");
    let _ = writeln!(c, "    timeout connect {}", ms(lb.timeout_connect));
    let _ = writeln!(c, "    timeout client {}", ms(lb.timeout_client));
    let _ = writeln!(c, "    timeout server {}", ms(lb.timeout_server));
    let _ = writeln!(c, "    timeout check {}", ms(lb.timeout_check));
    let _ = writeln!(c, "    timeout queue {}", ms(lb.timeout_server));
    let _ = writeln!(c, "    retries {}", lb.retries);
    if lb.redispatch {
        c.push_str("    option redispatch 1\n");
    }
    if !lb.retry_on.is_empty() {
        let words: Vec<String> = lb.retry_on.iter().map(|w| quoted(w)).collect();
        let _ = writeln!(c, "    retry-on {}", words.join(" "));
    }
    c
}

/// The `default-server` line: health checks and DNS of the service servers.
fn server_defaults(stack: &Stack) -> String {
    let lb = &stack.load_balancer;
    format!(
        "    default-server check inter {} fastinter {} downinter {} rise {} fall {} resolvers docker init-addr last,libc,none\n",
        ms(lb.check_interval),
        ms(lb.check_interval),
        ms(lb.check_interval),
        lb.rise,
        lb.fall
    )
}

/// `frontend web`: the routes.
fn frontend(c: &mut String, stack: &Stack) {
    let lb = &stack.load_balancer;
    let _ = writeln!(c, "frontend web\n    bind :{TRAFFIC_PORT}");
    for (i, r) in lb.routes.iter().enumerate() {
        // `--` ends the ACL's flags: a pattern is never read as one (`-i`, `-f`).
        let _ = writeln!(
            c,
            "    acl route_{i} path_beg -- {}",
            quoted(&r.path_prefix)
        );
        let _ = writeln!(
            c,
            "    use_backend {} if route_{i}",
            quoted(&backend_name(&r.service))
        );
    }
    let _ = writeln!(
        c,
        "    default_backend {}\n",
        quoted(&backend_name(&lb.service))
    );
}

/// Balance, health check and the server lines of one service's (inner) section.
fn service_servers<'a>(
    c: &mut String,
    stack: &Stack,
    svc: &crate::smoke::stack::Service,
    servers: impl Iterator<Item = &'a ServerAddr>,
) {
    service_checks(c, stack, svc);
    for s in servers {
        let _ = writeln!(
            c,
            "    server {} {}",
            quoted(&s.server),
            quoted(&format!("{}:{}", s.host, s.port))
        );
    }
}

/// Balance and health check of one service's section.
fn service_checks(c: &mut String, stack: &Stack, svc: &crate::smoke::stack::Service) {
    let _ = writeln!(c, "    balance {}", quoted(&stack.load_balancer.balance));
    let _ = writeln!(c, "    option httpchk GET {}", quoted(&svc.health));
    c.push_str("    http-check expect status 200\n");
}

/// The `haproxy.cfg` of a stack on Docker Swarm: the servers of a service are not known in
/// advance (Swarm places and replaces tasks), so each backend is a `server-template` of
/// `replicas` slots named `<service>-1` ... `<service>-N` that HAProxy fills from the A
/// records of `dns_name(service)` through the `resolvers docker` section (Docker's embedded
/// DNS, 127.0.0.11): with `endpoint_mode: dnsrr` the name answers with one address per
/// running task, and a task Swarm restarts shows up under its new address (configuration
/// manual §5.2 `server-template`, §5.3 "Server IP address resolution using DNS").
pub(crate) fn swarm_config(stack: &Stack, dns_name: impl Fn(&str) -> String) -> String {
    let mut c = single_level_head(stack);
    for svc in &stack.services {
        let _ = writeln!(c, "backend {}", quoted(&backend_name(&svc.name)));
        service_checks(&mut c, stack, svc);
        server_template(&mut c, svc, Variant::Candidate, &dns_name(&svc.name));
        c.push('\n');
    }
    stats(&mut c);
    c
}

/// `server-template` of `svc`'s `replicas` slots of variant `v` (`frontend-1` ...,
/// `base.frontend-1` ...), resolved from `dns`.
fn server_template(c: &mut String, svc: &crate::smoke::stack::Service, v: Variant, dns: &str) {
    let one = v.server(&svc.name, 1);
    let prefix = one.strip_suffix('1').unwrap_or(&one);
    let _ = writeln!(
        c,
        "    server-template {} {} {}",
        quoted(prefix),
        svc.replicas,
        quoted(&format!("{dns}:{}", svc.port))
    );
}

fn stats(c: &mut String) {
    let _ = writeln!(
        c,
        "frontend stats\n    bind :{STATS_PORT}\n    stats enable\n    stats uri {STATS_PATH}\n    stats refresh 5s"
    );
}

/// One server line of the stats CSV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerStat {
    pub backend: String,
    pub server: String,
    /// `UP`, `DOWN`, `MAINT`, `UP 1/2` (going down), `DOWN 1/2` (coming up), ...
    pub status: String,
    /// Last check result, e.g. `L7OK`, `L4CON`, `L7STS`.
    pub check_status: String,
    /// Number of checks failed so far.
    pub check_fail: u64,
    /// HTTP status of the last layer-7 check (`404`), empty otherwise.
    pub check_code: String,
    /// HAProxy's text about the last check (`Connection refused`, `Not Found`), may be empty.
    pub last_check: String,
}

impl ServerStat {
    /// Serving traffic (`UP`, or `UP 1/2` while failing but not yet down).
    pub(crate) fn is_up(&self) -> bool {
        self.status.starts_with("UP")
    }

    /// `UP` and its last health check completed and passed. HAProxy lists a new server as `UP`
    /// before its first check (check status `INI`), so `UP` alone does not mean ready.
    pub(crate) fn is_ready(&self) -> bool {
        self.status == "UP" && check_passed(&self.check_status)
    }
}

/// A completed, passing check: `L7OK`/`L7OKC` (HTTP, as configured), `L6OK` or `L4OK`. HAProxy
/// prefixes `* ` while a check is running; the status shown is still the last completed one.
/// Empty, `INI` (not checked yet) and every failure status are not.
pub(crate) fn check_passed(check_status: &str) -> bool {
    let s = check_status.trim_start_matches('*').trim();
    s.starts_with("L7OK") || s == "L6OK" || s == "L4OK"
}

/// Parses HAProxy's `show stat` CSV (the header line starts with `# `); only servers.
pub(crate) fn parse_stats(csv: &str) -> Vec<ServerStat> {
    let mut lines = csv.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let cols: Vec<&str> = header.trim_start_matches('#').trim().split(',').collect();
    let idx = |name: &str| cols.iter().position(|c| *c == name);
    let (Some(px), Some(sv), Some(st)) = (idx("pxname"), idx("svname"), idx("status")) else {
        return Vec::new();
    };
    let chk = idx("check_status");
    let fail = idx("chkfail");
    let code = idx("check_code");
    let last = idx("last_chk");
    lines
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let server = *f.get(sv)?;
            if server == "FRONTEND" || server == "BACKEND" || server.is_empty() {
                return None;
            }
            Some(ServerStat {
                backend: f.get(px)?.to_string(),
                server: server.to_string(),
                status: f.get(st)?.to_string(),
                check_status: chk.and_then(|i| f.get(i)).unwrap_or(&"").to_string(),
                check_fail: fail
                    .and_then(|i| f.get(i))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                check_code: code.and_then(|i| f.get(i)).unwrap_or(&"").to_string(),
                last_check: last.and_then(|i| f.get(i)).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

/// Fetches the stats CSV from `127.0.0.1:<port>` (one HTTP/1.0 request, bounded in time).
pub(crate) async fn fetch_stats(port: u16) -> Result<Vec<ServerStat>> {
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(format!("GET {STATS_PATH};csv HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .await?;
        let mut buf = Vec::new();
        s.take(4 << 20).read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(3), fetch)
        .await
        .context("the HAProxy stats page did not answer within 3 s")?
        .with_context(|| format!("could not read the HAProxy stats page on 127.0.0.1:{port}"))?;
    let (head, body) = split_response(&buf).context("the HAProxy stats page sent no HTTP body")?;
    let head = String::from_utf8_lossy(head);
    if !head.starts_with("HTTP/1.") || head.split_whitespace().nth(1).is_none_or(|c| c != "200") {
        anyhow::bail!(
            "the HAProxy stats page answered `{}`",
            head.lines().next().unwrap_or("")
        );
    }
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().replace(' ', "") == "transfer-encoding:chunked");
    // Dechunk the raw bytes first, then decode: a chunk may end inside a multi-byte character.
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_vec()
    };
    Ok(parse_stats(&String::from_utf8_lossy(&body)))
}

/// Splits a raw HTTP response into its head and body at the first empty line.
fn split_response(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((&buf[..at], &buf[at + 4..]))
}

/// Decodes an HTTP/1.1 chunked body (HAProxy answers the stats page chunked even to 1.0).
/// Works on bytes and never indexes past the input: an incomplete last chunk (a truncated
/// response) is left out, like a malformed size line it ends the body.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let line = String::from_utf8_lossy(&body[..eol]);
        let size = line.split(';').next().unwrap_or("").trim();
        let Ok(n) = usize::from_str_radix(size, 16) else {
            break;
        };
        let rest = &body[eol + 2..];
        if n == 0 {
            break;
        }
        let (Some(chunk), Some(after)) = (rest.get(..n), rest.get(n..)) else {
            break;
        };
        out.extend_from_slice(chunk);
        body = after.strip_prefix(b"\r\n").unwrap_or(after);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies() {
        assert_eq!(dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), b"abcde");
    }

    #[test]
    fn chunk_boundary_inside_a_multibyte_char() {
        // "é" is 0xC3 0xA9; the first chunk ends between its two bytes.
        let body = b"2\r\na\xC3\r\n2\r\n\xA9b\r\n0\r\n\r\n";
        let out = dechunk(body);
        assert_eq!(String::from_utf8(out).unwrap(), "a\u{e9}b");
    }

    #[test]
    fn truncated_or_malformed_chunks_do_not_panic() {
        assert_eq!(dechunk(b"2\r\nab\r\n10\r\nabc"), b"ab");
        assert_eq!(dechunk(b"zz\r\nabc\r\n"), b"");
        assert_eq!(dechunk(b"3\r\nabc"), b"abc");
        assert_eq!(dechunk(b"ffffffffffffffff\r\nab"), b"");
        assert_eq!(dechunk(b""), b"");
        let (head, body) = split_response(b"HTTP/1.0 200 OK\r\n\r\nx").unwrap();
        assert_eq!((head, body), (&b"HTTP/1.0 200 OK"[..], &b"x"[..]));
        assert!(split_response(b"HTTP/1.0 200 OK\r\n").is_none());
    }

    #[test]
    fn ready_needs_a_passing_check() {
        let stat = |status: &str, check: &str| ServerStat {
            backend: "be_frontend".into(),
            server: "frontend-1".into(),
            status: status.into(),
            check_status: check.into(),
            check_fail: 0,
            check_code: String::new(),
            last_check: String::new(),
        };
        assert!(stat("UP", "L7OK").is_ready());
        assert!(stat("UP", "* L7OK").is_ready());
        assert!(stat("UP", "L4OK").is_ready());
        assert!(!stat("UP", "INI").is_ready());
        assert!(!stat("UP", "* INI").is_ready());
        assert!(!stat("UP", "").is_ready());
        assert!(!stat("UP 1/2", "L7STS").is_ready());
        assert!(!stat("DOWN", "L7OK").is_ready());
    }

    #[test]
    fn stats_csv_servers_only() {
        let csv = "# pxname,svname,qcur,status,check_status,chkfail,check_code,last_chk,\n\
                   web,FRONTEND,,OPEN,,,,,\n\
                   be_frontend,frontend-1,0,UP,L7OK,0,200,OK,\n\
                   be_frontend,frontend-2,0,DOWN,L4CON,3,,Connection refused,\n\
                   be_backend,backend-1,0,DOWN,L7STS,2,404,Not Found,\n\
                   be_frontend,BACKEND,0,UP,,,,,\n";
        let s = parse_stats(csv);
        assert_eq!(s.len(), 3);
        assert!(s[0].is_up());
        assert_eq!(
            (
                s[1].status.as_str(),
                s[1].check_status.as_str(),
                s[1].check_fail,
                s[1].last_check.as_str()
            ),
            ("DOWN", "L4CON", 3, "Connection refused")
        );
        assert_eq!(
            (s[2].check_code.as_str(), s[2].last_check.as_str()),
            ("404", "Not Found")
        );
    }

    // The config as HAProxy reads it: `haproxy -c`, and a real HAProxy serving it (Debian's
    // `haproxy` package, the same 2.6 as the load balancer image).

    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use crate::smoke::stack::{self, RecipeImages};

    fn haproxy_bin() -> PathBuf {
        let found = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .chain([PathBuf::from("/usr/sbin")])
            .map(|d| d.join("haproxy"))
            .find(|p| p.is_file());
        found.expect("these tests run the real HAProxy: install Debian's `haproxy` package")
    }

    /// `cfg` written to `haproxy.cfg` in a temp directory (removed with the `TempDir`).
    fn cfg_file(cfg: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("haproxy.cfg");
        std::fs::write(&file, cfg).unwrap();
        (dir, file)
    }

    /// `haproxy -c` on `cfg`: (accepted, its output).
    fn haproxy_check(cfg: &str) -> (bool, String) {
        let (_dir, file) = cfg_file(cfg);
        let out = Command::new(haproxy_bin())
            .arg("-c")
            .arg("-f")
            .arg(&file)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    fn stack_of(text: &str) -> Stack {
        let recipes: RecipeImages = [
            ("backend".to_string(), true),
            ("frontend".to_string(), true),
        ]
        .into();
        stack::parse(Path::new("stack.toml"), text, &recipes).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Every character RFC 3986 allows in a path or query that means something to HAProxy's
    /// parser or a shell: `$` (an environment variable inside double quotes), `'` (strong
    /// quoting), `;`, `&`, `(`, `)`, `*`, `+`, `,`, `=`, `!`, `~`, `@`, `:`, `%`-escapes.
    const AWKWARD_HEALTH: &str = "/_h/'q'$HOME;a=(1)*+,!~@:%22?x=$PATH&y='2'/?z";
    const AWKWARD_PREFIX: &str = "/api$v1/'x'(y);z=1,2*+!~@:%20/";

    fn awkward_stack(check_interval: &str) -> String {
        format!(
            r#"
[services.backend]
image = "backend"
health = "{AWKWARD_HEALTH}"

[services.frontend]
image = "frontend"
env = {{ BACKEND_URL = "http://{{backend}}:8080" }}

[load_balancer]
kind = "haproxy"
service = "frontend"
routes = [{{ path_prefix = "{AWKWARD_PREFIX}", service = "backend" }}]
check_interval = "{check_interval}"
retry_on = ["conn-failure", "503"]

[load]
rate = 50
duration = "30s"
paths = [{{ path = "/", weight = 1 }}]

[thresholds]
min_rate_ratio = 0.98
min_success = 0.98
max_p99_ms = 1000
"#
        )
    }

    #[test]
    fn quoting_escapes_what_haproxy_interprets() {
        assert_eq!(quoted("/a"), r#""/a""#);
        assert_eq!(
            quoted("a\"b$c\\d#e'f g\nh\0i\u{7f}"),
            r#""a\"b\$c\\d\#e'f g\x0ah\x00i\x7f""#
        );
        assert_eq!(comment("x\ny"), r"x\ny");
    }

    #[test]
    fn user_values_are_written_quoted() {
        let stack = stack_of(&awkward_stack("1s"));
        let servers = [ServerAddr {
            service: "backend".into(),
            server: "backend-1".into(),
            host: "builder-smoke-x-backend-1".into(),
            port: 8080,
            variant: Variant::Candidate,
        }];
        let cfg = config(&stack, &servers);
        assert!(
            cfg.contains(&format!("option httpchk GET {}\n", quoted(AWKWARD_HEALTH))),
            "{cfg}"
        );
        assert!(
            cfg.contains(&format!("path_beg -- {}\n", quoted(AWKWARD_PREFIX))),
            "{cfg}"
        );
        assert!(cfg.contains("server \"backend-1\" \"builder-smoke-x-backend-1:8080\"\n"));
        assert!(cfg.contains("retry-on \"conn-failure\" \"503\"\n"), "{cfg}");
    }

    #[test]
    #[cfg_attr(
        not(feature = "engine-tests"),
        ignore = "engine tier: runs the real haproxy"
    )]
    fn haproxy_accepts_the_config_at_every_limit_of_the_stack() {
        // The largest values the stack accepts: 7-day timers (HAProxy's limit is ~24.8 days),
        // rise/fall/retries 100, port 65535, 64 replicas of a 27-character service.
        let name = "a".repeat(stack::MAX_SERVICE_NAME);
        let text = awkward_stack("168h")
            .replace("[services.backend]", &format!("[services.{name}]"))
            .replace("service = \"backend\"", &format!("service = \"{name}\""))
            .replace("{backend}", &format!("{{{name}}}"))
            .replace(
                "retry_on = [",
                "rise = 100\nfall = 100\nretries = 100\ntimeout_connect = \"168h\"\n\
                 timeout_client = \"168h\"\ntimeout_server = \"168h\"\n\
                 timeout_check = \"168h\"\nretry_on = [",
            )
            .replace("image = \"frontend\"", "image = \"frontend\"\nport = 65535");
        let stack = stack_of(&text);
        let servers: Vec<ServerAddr> = (1..=stack::MAX_REPLICAS)
            .map(|i| ServerAddr {
                service: name.clone(),
                server: format!("{name}-{i}"),
                host: "127.0.0.1".into(),
                port: 65535,
                variant: Variant::Candidate,
            })
            .collect();
        let cfg = config(&stack, &servers);
        let (ok, out) = haproxy_check(&cfg);
        assert!(ok, "HAProxy refused the config:\n{out}\n{cfg}");
        assert!(!out.contains("ALERT"), "{out}");
    }

    /// A local HTTP server that answers 200 to everything and keeps each request line.
    fn recorder() -> (u16, Arc<Mutex<Vec<String>>>) {
        recorder_slow_on("", Duration::ZERO)
    }

    /// [`recorder`], answering requests for `slow` after `delay` (`""` is no request
    /// target), each connection in a thread of its own.
    fn recorder_slow_on(slow: &'static str, delay: Duration) -> (u16, Arc<Mutex<Vec<String>>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut conn) = conn else { continue };
                let seen2 = seen2.clone();
                std::thread::spawn(move || {
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf) {
                            Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                            _ => break,
                        }
                    }
                    let text = String::from_utf8_lossy(&head);
                    let line = text.lines().next().unwrap_or("").to_string();
                    if line.split(' ').nth(1) == Some(slow) {
                        std::thread::sleep(delay);
                    }
                    seen2.lock().unwrap().push(line);
                    let _ = conn.write_all(
                        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    );
                });
            }
        });
        (port, seen)
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// Runs the real HAProxy on `cfg` until the result is dropped.
    fn serve(cfg: &str) -> (tempfile::TempDir, Killed) {
        let (dir, file) = cfg_file(cfg);
        let child = Command::new(haproxy_bin())
            .arg("-db")
            .arg("-f")
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        (dir, Killed(child))
    }

    /// Kills the HAProxy this test started, on every path.
    struct Killed(Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// The status line of `GET target` through HAProxy on `port`.
    fn get(port: u16, target: &str) -> String {
        get_variant(port, target).0
    }

    fn targets(seen: &Mutex<Vec<String>>) -> Vec<String> {
        seen.lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.split(' ').nth(1).map(str::to_string))
            .collect()
    }

    #[test]
    #[cfg_attr(
        not(feature = "engine-tests"),
        ignore = "engine tier: runs the real haproxy"
    )]
    fn haproxy_reads_awkward_values_as_written() {
        let mut stack = stack_of(&awkward_stack("100ms"));
        // A stack file name can hold a newline; it lands in a comment and must stay there.
        stack.file = PathBuf::from("recipes/x\nfrontend evil\n    bind :1\n.toml");
        let (backend_port, backend) = recorder();
        let (frontend_port, frontend) = recorder();
        let server = |service: &str, port| ServerAddr {
            service: service.into(),
            server: format!("{service}-1"),
            host: "127.0.0.1".into(),
            port,
            variant: Variant::Candidate,
        };
        let servers = [
            server("backend", backend_port),
            server("frontend", frontend_port),
        ];
        let (traffic, stats) = (free_port(), free_port());
        let cfg = on_loopback(&config(&stack, &servers), traffic, stats);
        assert!(
            !cfg.lines().any(|l| l.starts_with("frontend evil")),
            "{cfg}"
        );
        let (ok, out) = haproxy_check(&cfg);
        assert!(ok, "HAProxy refused the config:\n{out}\n{cfg}");
        assert!(!out.contains("ALERT") && !out.contains("WARNING"), "{out}");

        let _haproxy = serve(&cfg);
        // The route's prefix is matched as written (`$v1` is not an empty variable), and the
        // health checks ask for exactly the stack's paths. HAProxy sends traffic to a server
        // before its first check, so wait for both.
        let routed = format!("{AWKWARD_PREFIX}items?n=1");
        let deadline = Instant::now() + Duration::from_secs(15);
        let (a, b) = loop {
            let a = get(traffic, &routed);
            let b = get(traffic, "/other");
            let checked = targets(&backend).iter().any(|t| t == AWKWARD_HEALTH)
                && targets(&frontend).iter().any(|t| t == "/");
            if (a.contains(" 200 ") && b.contains(" 200 ") && checked) || Instant::now() > deadline
            {
                break (a, b);
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(
            a.contains(" 200 ") && b.contains(" 200 "),
            "{a:?} {b:?}\n{cfg}"
        );
        let backend = targets(&backend);
        let frontend = targets(&frontend);
        assert!(backend.iter().any(|t| t == AWKWARD_HEALTH), "{backend:?}");
        assert!(frontend.iter().any(|t| t == "/"), "{frontend:?}");
        assert!(backend.contains(&routed), "{backend:?}");
        assert!(!frontend.contains(&routed), "{frontend:?}");
        assert!(frontend.iter().any(|t| t == "/other"), "{frontend:?}");
    }

    /// The response to `GET target` through HAProxy on `port`: (status line, variant header).
    fn get_variant(port: u16, target: &str) -> (String, Option<String>) {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            return (String::new(), None);
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.write_all(format!("GET {target} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes());
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text.lines().next().unwrap_or("").to_string();
        let variant = text.lines().take_while(|l| !l.is_empty()).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(VARIANT_HEADER)
                .then(|| v.trim().to_string())
        });
        (status, variant)
    }

    fn canary_stack() -> Stack {
        let text = awkward_stack("100ms")
            .replace(AWKWARD_HEALTH, "/")
            .replace(AWKWARD_PREFIX, "/api/");
        stack_of(&text)
    }

    #[test]
    fn canary_config_has_two_levels() {
        let stack = canary_stack();
        let server = |service: &str, variant: Variant| ServerAddr {
            service: service.into(),
            server: variant.server(service, 1),
            host: format!("h-{service}-{variant}"),
            port: 8080,
            variant,
        };
        let servers = [
            server("backend", Variant::Candidate),
            server("backend", Variant::Baseline),
        ];
        let cfg = canary_config(&stack, &servers, 30);
        assert!(
            cfg.contains("    stats socket ipv4@0.0.0.0:9999 level admin\n"),
            "{cfg}"
        );
        let outer = cfg
            .split("\nbackend \"be_backend\"\n")
            .nth(1)
            .and_then(|t| t.split("\n\n").next())
            .unwrap();
        assert_eq!(
            outer,
            "    balance random(1)\n    retries 0\n    no option redispatch\n    retry-on none\n    \
             timeout server 1800ms\n    \
             http-after-response set-header X-Builder-Variant %[srv_name] \
             unless { res.hdr(X-Builder-Variant) -m found }\n    \
             server candidate \"abns@builder.be_backend.candidate\" weight 30\n    \
             server baseline \"abns@builder.be_backend.baseline\" weight 70"
        );
        let inner = cfg
            .split("\nlisten \"be_backend.baseline\"\n")
            .nth(1)
            .and_then(|t| t.split("\n\n").next())
            .unwrap();
        assert!(inner.contains("    http-after-response set-header X-Builder-Variant baseline\n"));
        assert!(inner.contains("    default-server check inter"), "{inner}");
        assert!(
            inner.contains("server \"base.backend-1\" \"h-backend-baseline:8080\""),
            "{inner}"
        );
        assert!(
            !inner.contains("backend-1\" \"h-backend-candidate"),
            "{inner}"
        );
        // The single-level config is unchanged: no runtime API, no variant header.
        let single = config(&stack, &servers[..1]);
        assert!(!single.contains("stats socket") && !single.contains(VARIANT_HEADER));
    }

    /// `cfg` with its traffic and stats listeners on 127.0.0.1 ports of the test's own.
    fn on_loopback(cfg: &str, traffic: u16, stats: u16) -> String {
        cfg.replace(
            &format!("bind :{TRAFFIC_PORT}\n"),
            &format!("bind 127.0.0.1:{traffic}\n"),
        )
        .replace(
            &format!("bind :{STATS_PORT}\n"),
            &format!("bind 127.0.0.1:{stats}\n"),
        )
    }

    /// The real HAProxy on a canary config, on 127.0.0.1 ports of its own, every server up.
    struct LocalCanary {
        traffic: u16,
        api: u16,
        rt: tokio::runtime::Runtime,
        _haproxy: (tempfile::TempDir, Killed),
    }

    impl LocalCanary {
        /// Starts HAProxy on `cfg` and waits (at most 15 s) until `servers` servers passed
        /// their checks.
        fn start(cfg: &str, servers: usize) -> LocalCanary {
            let (traffic, stats, api) = (free_port(), free_port(), free_port());
            let cfg = on_loopback(cfg, traffic, stats)
                .replace(
                    &format!("ipv4@0.0.0.0:{API_PORT}"),
                    &format!("ipv4@127.0.0.1:{api}"),
                )
                // Abstract sockets are per network namespace: unique names beside other tests.
                .replace(
                    "abns@builder.",
                    &format!("abns@test{}-{traffic}.", std::process::id()),
                );
            let (ok, out) = haproxy_check(&cfg);
            assert!(ok, "HAProxy refused the config:\n{out}\n{cfg}");
            assert!(
                !out.contains("ALERT") && !out.contains("WARNING"),
                "{out}\n{cfg}"
            );
            let haproxy = serve(&cfg);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let up = rt
                    .block_on(fetch_stats(stats))
                    .map(|c| c.iter().filter(|c| c.is_ready()).count())
                    .unwrap_or(0);
                if up == servers || Instant::now() > deadline {
                    assert_eq!(up, servers, "servers not up");
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            LocalCanary {
                traffic,
                api,
                rt,
                _haproxy: haproxy,
            }
        }
    }

    #[test]
    #[cfg_attr(
        not(feature = "engine-tests"),
        ignore = "engine tier: runs the real haproxy"
    )]
    fn a_request_slower_than_the_load_timeout_is_a_504_of_its_variant() {
        // load.timeout 1 s: HAProxy answers after 900 ms. The candidate answers `/slow`
        // after 3 s, the baseline at once.
        let text = awkward_stack("100ms")
            .replace(AWKWARD_HEALTH, "/")
            .replace(AWKWARD_PREFIX, "/api/")
            .replace("duration = \"30s\"", "duration = \"30s\"\ntimeout = \"1s\"");
        let stack = stack_of(&text);
        let (cand, _) = recorder_slow_on("/slow", Duration::from_secs(3));
        let (base, _) = recorder();
        let server = |variant: Variant, port| ServerAddr {
            service: "frontend".into(),
            server: variant.server("frontend", 1),
            host: "127.0.0.1".into(),
            port,
            variant,
        };
        let servers = [
            server(Variant::Candidate, cand),
            server(Variant::Baseline, base),
        ];
        let cfg = canary_config(&stack, &servers, 50);
        assert!(cfg.contains("    timeout server 900ms\n"), "{cfg}");
        let local = LocalCanary::start(&cfg, 2);
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..30 {
            let t = Instant::now();
            let (status, v) = get_variant(local.traffic, "/slow");
            let took = t.elapsed();
            let v = v.unwrap_or_else(|| format!("none ({status})"));
            match v.as_str() {
                "candidate" => {
                    assert!(status.contains(" 504 "), "{status}");
                    assert!(took < Duration::from_secs(1), "{took:?}");
                }
                "baseline" => assert!(status.contains(" 200 "), "{status}"),
                _ => panic!("an answer without a variant: {v}"),
            }
            *seen.entry(v).or_insert(0) += 1;
        }
        // 30 draws at 50/50: both variants (a 1 in 5e8 chance to miss one).
        assert_eq!(seen.len(), 2, "{seen:?}");
    }

    #[test]
    #[cfg_attr(
        not(feature = "engine-tests"),
        ignore = "engine tier: runs the real haproxy"
    )]
    fn haproxy_splits_exactly_stamps_the_variant_and_obeys_the_runtime_api() {
        let stack = canary_stack();
        let (cand, _) = recorder();
        let (base, _) = recorder();
        let server = |service: &str, variant: Variant, port| ServerAddr {
            service: service.into(),
            server: variant.server(service, 1),
            host: "127.0.0.1".into(),
            port,
            variant,
        };
        let servers = [
            server("backend", Variant::Candidate, cand),
            server("frontend", Variant::Candidate, cand),
            server("backend", Variant::Baseline, base),
            server("frontend", Variant::Baseline, base),
        ];
        let local = LocalCanary::start(&canary_config(&stack, &servers, 50), 4);
        let (traffic, api, rt) = (local.traffic, local.api, &local.rt);
        let tally = |n: usize, target: &str| {
            let mut m = std::collections::BTreeMap::new();
            for _ in 0..n {
                let (status, v) = get_variant(traffic, target);
                assert!(status.contains(" 200 "), "{status}");
                *m.entry(v.unwrap_or_default()).or_insert(0) += 1;
            }
            m
        };
        // 50/50 by weighted draws (200 each: outside 70..130 is a 4.2-sigma event), each
        // answer stamped with its variant.
        for route in ["/", "/api/x"] {
            let m = tally(200, route);
            let n = |v: &str| m.get(v).copied().unwrap_or(0);
            assert_eq!(n("candidate") + n("baseline"), 200, "{m:?}");
            assert!((70..=130).contains(&n("candidate")), "{m:?}");
        }
        // All on the candidate, the baseline drained.
        let api = runtime::RuntimeApi { port: api };
        rt.block_on(async {
            for be in ["be_frontend", "be_backend"] {
                api.set_weight(be, "candidate", 100).await.unwrap();
                api.set_weight(be, "baseline", 0).await.unwrap();
                api.set_state(be, "baseline", runtime::ServerState::Drain)
                    .await
                    .unwrap();
            }
        });
        let m = tally(10, "/");
        assert_eq!(m.get("candidate"), Some(&10), "{m:?}");
        let c = rt.block_on(api.show_stat()).unwrap();
        let b = c
            .iter()
            .find(|c| c.backend == "be_frontend" && c.server == "baseline")
            .unwrap();
        assert_eq!((b.weight, b.status.as_str()), (0, "DRAIN"), "{b:?}");
        // HAProxy's errors come back as errors.
        let e = rt
            .block_on(api.set_weight("be_nosuch", "candidate", 1))
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("HAProxy refused `set weight be_nosuch/candidate 1`"),
            "{e}"
        );
    }

    #[test]
    fn swarm_config_fills_server_slots_from_dns_and_haproxy_accepts_it() {
        let stack = crate::smoke::tests::shipped_stack();
        let cfg = swarm_config(&stack, |s| s.to_string());
        for svc in &stack.services {
            let line = format!(
                "    server-template \"{}-\" {} \"{}:{}\"\n",
                svc.name, svc.replicas, svc.name, svc.port
            );
            assert!(cfg.contains(&line), "{line}\n{cfg}");
        }
        assert!(cfg.contains("nameserver dns 127.0.0.11:53"), "{cfg}");
        assert!(!cfg.contains("\n    server \""), "{cfg}");
        let (ok, out) = haproxy_check(&cfg);
        assert!(ok, "HAProxy refused the config:\n{out}\n{cfg}");
        assert!(!out.contains("ALERT"), "{out}");
    }

    #[test]
    fn swarm_canary_config_templates_each_variant_and_haproxy_accepts_it() {
        let stack = crate::smoke::tests::shipped_stack();
        let dns = |v: Variant, s: &str| format!("builder-{}-{s}", v.as_str());
        let cfg = canary_config_of(&stack, Servers::Templates(&dns), 30);
        for svc in &stack.services {
            for (v, prefix) in [
                (Variant::Candidate, format!("{}-", svc.name)),
                (Variant::Baseline, format!("base.{}-", svc.name)),
            ] {
                let line = format!(
                    "    server-template \"{prefix}\" {} \"builder-{}-{}:{}\"\n",
                    svc.replicas,
                    v.as_str(),
                    svc.name,
                    svc.port
                );
                assert!(cfg.contains(&line), "{line}\n{cfg}");
            }
        }
        assert!(cfg.contains("server candidate \"abns@"), "{cfg}");
        assert!(cfg.contains("weight 30\n"), "{cfg}");
        assert!(cfg.contains("weight 70\n"), "{cfg}");
        let (ok, out) = haproxy_check(&cfg);
        assert!(ok, "HAProxy refused the config:\n{out}\n{cfg}");
        assert!(!out.contains("ALERT"), "{out}");
    }
}
