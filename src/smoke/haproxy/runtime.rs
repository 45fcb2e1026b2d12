//! HAProxy's runtime API (management guide §9.3 "Unix Socket commands", here on a TCP
//! `stats socket` published on 127.0.0.1): one command per connection, the reply read to
//! the end. HAProxy answers errors in text, so every reply is checked: `set weight` and
//! `set server` answer nothing when they worked; `show stat` answers the stats CSV.

use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest reply read (`show stat` of a large deployment is tens of KiB).
const MAX_REPLY: u64 = 4 << 20;
/// How long one command may take, connect included.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);

/// The runtime API of one HAProxy, at `127.0.0.1:<port>`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RuntimeApi {
    pub port: u16,
}

/// A server's state for `set server <b>/<s> state` (the switch only drains).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerState {
    Drain,
}

impl RuntimeApi {
    /// Sends one command and returns HAProxy's reply, bounded in time and size.
    pub(crate) async fn command(&self, cmd: &str) -> Result<String> {
        if cmd.contains(['\n', '\r', ';']) {
            anyhow::bail!(
                "refusing to send `{}` to HAProxy: one command per call",
                cmd.escape_debug()
            );
        }
        let port = self.port;
        let exchange = async {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            s.write_all(format!("{cmd}\n").as_bytes()).await?;
            let mut buf = Vec::new();
            (&mut s).take(MAX_REPLY).read_to_end(&mut buf).await?;
            Ok::<_, std::io::Error>(buf)
        };
        let buf = tokio::time::timeout(COMMAND_TIMEOUT, exchange)
            .await
            .with_context(|| {
                format!(
                    "HAProxy's runtime API on 127.0.0.1:{port} did not answer `{cmd}` within {}s",
                    COMMAND_TIMEOUT.as_secs()
                )
            })?
            .with_context(|| {
                format!("could not send `{cmd}` to HAProxy's runtime API on 127.0.0.1:{port}")
            })?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    /// `set weight <backend>/<server> <weight>`.
    pub(crate) async fn set_weight(&self, backend: &str, server: &str, weight: u32) -> Result<()> {
        let cmd = format!("set weight {backend}/{server} {weight}");
        let reply = self.command(&cmd).await?;
        check_empty_reply(&cmd, &reply)
    }

    /// `set server <backend>/<server> state ready|drain`.
    pub(crate) async fn set_state(
        &self,
        backend: &str,
        server: &str,
        state: ServerState,
    ) -> Result<()> {
        let word = match state {
            ServerState::Drain => "drain",
        };
        let cmd = format!("set server {backend}/{server} state {word}");
        let reply = self.command(&cmd).await?;
        check_empty_reply(&cmd, &reply)
    }

    /// `show stat`: every server's counters.
    pub(crate) async fn show_stat(&self) -> Result<Vec<ServerCounters>> {
        let reply = self.command("show stat").await?;
        parse_counters(&reply)
    }
}

/// A command that changes state answers nothing (at most a blank line) when it worked;
/// anything else is HAProxy's error message, e.g. `No such server.`.
pub(crate) fn check_empty_reply(cmd: &str, reply: &str) -> Result<()> {
    let text = reply.trim();
    if text.is_empty() {
        Ok(())
    } else {
        Err(crate::error::failed(format!(
            "HAProxy refused `{cmd}`: {}",
            crate::diag::escape_controls(&text.lines().collect::<Vec<_>>().join(" / "))
        )))
    }
}

/// The counters of one server in `show stat` (management guide §9.1 "CSV format"), or
/// their growth over a time ([`ServerCounters::since`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct ServerCounters {
    pub backend: String,
    pub server: String,
    /// Sessions (connections through it) so far: `stot`.
    pub sessions: u64,
    /// Responses by class: `hrsp_2xx`, `hrsp_5xx`.
    pub hrsp_2xx: u64,
    pub hrsp_5xx: u64,
    /// Response errors (`eresp`: the server closed or failed mid-response).
    pub eresp: u64,
    /// Connection errors (`econ`).
    pub econ: u64,
    /// Retries (`wretr`) and redispatches (`wredis`).
    pub wretr: u64,
    pub wredis: u64,
    /// Current weight (`weight`).
    pub weight: u64,
    /// `UP`, `DRAIN`, `no check`, ...
    pub status: String,
}

impl ServerCounters {
    /// The counters' growth since `before` (same server); weight and status as now.
    pub(crate) fn since(&self, before: &ServerCounters) -> ServerCounters {
        ServerCounters {
            backend: self.backend.clone(),
            server: self.server.clone(),
            sessions: self.sessions.saturating_sub(before.sessions),
            hrsp_2xx: self.hrsp_2xx.saturating_sub(before.hrsp_2xx),
            hrsp_5xx: self.hrsp_5xx.saturating_sub(before.hrsp_5xx),
            eresp: self.eresp.saturating_sub(before.eresp),
            econ: self.econ.saturating_sub(before.econ),
            wretr: self.wretr.saturating_sub(before.wretr),
            wredis: self.wredis.saturating_sub(before.wredis),
            weight: self.weight,
            status: self.status.clone(),
        }
    }
}

/// Parses `show stat` (a `# ` header line, then one CSV line per proxy row); only servers.
/// A reply that is no stats CSV (an error text) is an error.
pub(crate) fn parse_counters(csv: &str) -> Result<Vec<ServerCounters>> {
    let mut lines = csv.lines();
    let header = lines.next().unwrap_or_default();
    let Some(header) = header.strip_prefix("# ") else {
        return Err(crate::error::failed(format!(
            "HAProxy answered `show stat` with `{}`, not the stats CSV",
            crate::diag::escape_controls(csv.trim())
        )));
    };
    let cols: Vec<&str> = header.split(',').collect();
    let idx = |name: &str| cols.iter().position(|c| *c == name);
    let (Some(px), Some(sv)) = (idx("pxname"), idx("svname")) else {
        anyhow::bail!("HAProxy's `show stat` header lacks pxname/svname: `{header}`");
    };
    let num = |f: &[&str], name: &str| -> u64 {
        idx(name)
            .and_then(|i| f.get(i))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let st = idx("status");
    Ok(lines
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let server = *f.get(sv)?;
            if server == "FRONTEND" || server == "BACKEND" || server.is_empty() {
                return None;
            }
            Some(ServerCounters {
                backend: f.get(px)?.to_string(),
                server: server.to_string(),
                sessions: num(&f, "stot"),
                hrsp_2xx: num(&f, "hrsp_2xx"),
                hrsp_5xx: num(&f, "hrsp_5xx"),
                eresp: num(&f, "eresp"),
                econ: num(&f, "econ"),
                wretr: num(&f, "wretr"),
                wredis: num(&f, "wredis"),
                weight: num(&f, "weight"),
                status: st.and_then(|i| f.get(i)).unwrap_or(&"").to_string(),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_commands_answer_nothing_when_they_work() {
        assert!(check_empty_reply("set weight a/b 1", "").is_ok());
        assert!(check_empty_reply("set weight a/b 1", "\n").is_ok());
        let e =
            check_empty_reply("set weight be_x/candidate 5", "No such server.\n\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "HAProxy refused `set weight be_x/candidate 5`: No such server."
        );
        let e = check_empty_reply(
            "set server a/b state drain",
            "Require 'backend/server'.\nline2\n",
        )
        .unwrap_err();
        assert!(
            e.to_string().ends_with("Require 'backend/server'. / line2"),
            "{e}"
        );
    }

    #[test]
    fn show_stat_counters() {
        let csv =
            "# pxname,svname,qcur,stot,econ,eresp,wretr,wredis,status,weight,hrsp_2xx,hrsp_5xx,\n\
                   web,FRONTEND,,10,,,,,OPEN,,8,2,\n\
                   be_frontend,candidate,0,40,1,2,3,4,no check,50,30,5,\n\
                   be_frontend,baseline,0,41,0,0,0,0,DRAIN,0,41,0,\n\
                   be_frontend,BACKEND,0,81,,,,,UP,50,71,5,\n";
        let c = parse_counters(csv).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(
            c[0],
            ServerCounters {
                backend: "be_frontend".into(),
                server: "candidate".into(),
                sessions: 40,
                hrsp_2xx: 30,
                hrsp_5xx: 5,
                eresp: 2,
                econ: 1,
                wretr: 3,
                wredis: 4,
                weight: 50,
                status: "no check".into(),
            }
        );
        assert_eq!((c[1].status.as_str(), c[1].weight), ("DRAIN", 0));
        let e = parse_counters("Permission denied\n").unwrap_err();
        assert!(e.to_string().contains("not the stats CSV"), "{e}");
        assert!(parse_counters("").is_err());
    }
}
