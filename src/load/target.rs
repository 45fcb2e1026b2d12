//! Load targets: parses `http://host:port/path` URLs, resolves them once before the run,
//! enforces the loopback-only safety rule, and spreads requests over targets by weight with a
//! deterministic smooth weighted round-robin. Does no I/O beyond name resolution.

use std::net::SocketAddr;

use hyper::http::{uri::PathAndQuery, HeaderValue, Uri};

use crate::error::usage;

/// Largest weight accepted for one target; keeps the round-robin cycle small.
pub(crate) const MAX_WEIGHT: u32 = 10_000;

/// A URL split into what the client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedUrl {
    /// Host as written, without IPv6 brackets.
    pub host: String,
    pub port: u16,
    /// `host[:port]` as written in the URL; the default `Host` header.
    pub authority: String,
    pub path: PathAndQuery,
}

/// Parses an `http://` URL; anything else is a usage error that says what to write instead.
pub(crate) fn parse_url(url: &str) -> anyhow::Result<ParsedUrl> {
    let uri: Uri = url.parse().map_err(|e| {
        usage(format!(
            "invalid target url `{url}`: {e}; write it as http://127.0.0.1:8080/path"
        ))
    })?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => {
            return Err(usage(format!(
                "target url `{url}` uses `{other}://`; only plain http:// is supported"
            )))
        }
        None => {
            return Err(usage(format!(
                "target url `{url}` has no scheme; write it as http://{url}"
            )))
        }
    }
    let authority = uri
        .authority()
        .ok_or_else(|| usage(format!("target url `{url}` has no host")))?;
    if authority.as_str().contains('@') {
        return Err(usage(format!(
            "target url `{url}` contains user information, which is not supported"
        )));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if host.is_empty() {
        return Err(usage(format!("target url `{url}` has no host")));
    }
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let path = if path.as_str().is_empty() {
        PathAndQuery::from_static("/")
    } else {
        path
    };
    Ok(ParsedUrl {
        port: authority.port_u16().unwrap_or(80),
        authority: authority.as_str().to_string(),
        host,
        path,
    })
}

/// A target ready for the client: address resolved once, request parts prebuilt.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub url: String,
    pub weight: u32,
    pub addr: SocketAddr,
    pub host_header: HeaderValue,
    pub path: PathAndQuery,
    /// Index of the connection pool this target uses (one per address + Host header).
    pub pool: usize,
}

/// Resolves every target. With `allow_remote == false`, every address a name resolves to must
/// be a loopback address, otherwise it is a usage error: this tool must not send load to
/// machines nobody asked it to.
pub(crate) async fn resolve(
    targets: &[super::Target],
    host_override: Option<&str>,
    allow_remote: bool,
) -> anyhow::Result<Vec<Resolved>> {
    let mut out: Vec<Resolved> = Vec::with_capacity(targets.len());
    let mut pools: Vec<(SocketAddr, HeaderValue)> = Vec::new();
    for t in targets {
        if t.weight == 0 || t.weight > MAX_WEIGHT {
            return Err(usage(format!(
                "target `{}` has weight {}; use a weight from 1 to {MAX_WEIGHT}",
                t.url, t.weight
            )));
        }
        let parsed = parse_url(&t.url)?;
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((parsed.host.as_str(), parsed.port))
            .await
            .map_err(|e| {
                usage(format!(
                    "could not resolve host `{}` of target `{}`: {e}",
                    parsed.host, t.url
                ))
            })?
            .collect();
        let Some(first) = addrs.first().copied() else {
            return Err(usage(format!(
                "host `{}` of target `{}` resolves to no address",
                parsed.host, t.url
            )));
        };
        if !allow_remote {
            if let Some(bad) = addrs.iter().find(|a| !a.ip().is_loopback()) {
                return Err(usage(format!(
                    "refusing to send load to `{}`: `{}` resolves to {}, which is not a loopback \
                     address; use 127.0.0.1, or pass --allow-remote for a machine you are allowed to load",
                    t.url,
                    parsed.host,
                    bad.ip()
                )));
            }
        }
        // Prefer an IPv4 address when a name resolves to both (localhost → 127.0.0.1, ::1).
        let addr = addrs.iter().copied().find(|a| a.is_ipv4()).unwrap_or(first);
        let host = host_override.unwrap_or(&parsed.authority);
        let host_header = HeaderValue::from_str(host)
            .map_err(|_| usage(format!("invalid Host header value `{host}`")))?;
        let pool = match pools
            .iter()
            .position(|(a, h)| *a == addr && *h == host_header)
        {
            Some(i) => i,
            None => {
                pools.push((addr, host_header.clone()));
                pools.len() - 1
            }
        };
        out.push(Resolved {
            url: t.url.clone(),
            weight: t.weight,
            addr,
            host_header,
            path: parsed.path,
            pool,
        });
    }
    Ok(out)
}

/// One cycle of smooth weighted round-robin (nginx's algorithm): with weights 3 and 1 it gives
/// `0 0 1 0`; every target appears exactly `weight / gcd` times per cycle, evenly interleaved.
/// Request `i` goes to `cycle[i % cycle.len()]`, so the split is exact and reproducible.
pub(crate) fn wrr_cycle(weights: &[u32]) -> Vec<usize> {
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let w: Vec<i64> = weights.iter().map(|&x| i64::from(x / g)).collect();
    let total: i64 = w.iter().sum();
    let mut current = vec![0i64; w.len()];
    let mut cycle = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        let mut best = 0;
        for (i, wi) in w.iter().enumerate() {
            current[i] += wi;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        cycle.push(best);
    }
    cycle
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http_urls() {
        let p = parse_url("http://127.0.0.1:8080/api?x=1").unwrap();
        assert_eq!(p.host, "127.0.0.1");
        assert_eq!(p.port, 8080);
        assert_eq!(p.authority, "127.0.0.1:8080");
        assert_eq!(p.path.as_str(), "/api?x=1");
        let p = parse_url("http://localhost").unwrap();
        assert_eq!((p.port, p.path.as_str()), (80, "/"));
        let p = parse_url("http://[::1]:9/").unwrap();
        assert_eq!(p.host, "::1");
    }

    #[test]
    fn rejects_other_schemes_and_garbage() {
        for bad in [
            "https://127.0.0.1/",
            "127.0.0.1:80",
            "ftp://x/",
            "http://",
            "http://u@h/",
        ] {
            let err = parse_url(bad).unwrap_err();
            assert_eq!(crate::error::exit_code(&err), 2, "{bad}: {err}");
        }
    }

    #[test]
    fn wrr_is_exact_and_interleaved() {
        assert_eq!(wrr_cycle(&[3, 1]), vec![0, 0, 1, 0]);
        assert_eq!(wrr_cycle(&[2, 2]), vec![0, 1]);
        let c = wrr_cycle(&[5, 3, 2]);
        assert_eq!(c.len(), 10);
        for (i, want) in [5, 3, 2].into_iter().enumerate() {
            assert_eq!(c.iter().filter(|&&x| x == i).count(), want);
        }
        // Never two of the smallest in a row.
        assert!(c.windows(2).all(|w| !(w[0] == 2 && w[1] == 2)));
    }

    #[tokio::test]
    async fn refuses_remote_unless_allowed() {
        let t = |url: &str| {
            vec![super::super::Target {
                url: url.into(),
                weight: 1,
            }]
        };
        let ok = resolve(&t("http://localhost:1/"), None, false)
            .await
            .unwrap();
        assert!(ok[0].addr.ip().is_loopback());
        let err = resolve(&t("http://192.0.2.1:80/"), None, false)
            .await
            .unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2);
        assert!(err.to_string().contains("--allow-remote"), "{err}");
        let ok = resolve(&t("http://192.0.2.1:80/"), Some("svc.local"), true)
            .await
            .unwrap();
        assert_eq!(ok[0].host_header, "svc.local");
    }
}
